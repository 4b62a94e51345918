"""Render a report template (Quarto markdown + Jinja2 placeholders) to HTML and PDF.

Templates live in `reports/` (`wave.qmd`, `company.qmd`). A template only lays out what assets
computed beforehand: `context` holds numbers, pre-made markdown tables (strings) and figures
(`pipeline.reporting.figures.FigureFile`, i.e. `(path, alt)`). Inside a template:

    {{ n_respondents }}                                   a number or string
    {{ "%.2f" | format(alpha) }}                          a formatted number
    {{ reliability_table }}                               a markdown (pipe) table
    : Reliability per scale {#tbl-reliability}            its caption, on the line after it
    {{ figure(coef_plot, "Fixed effects", width="90%") }} a figure with caption and alt text

Jinja comments are `{## ... ##}` (`{#` stays free for Quarto labels). Figure paths are made
absolute. Context strings go into the markdown as they are: escape data-derived text that could
read as markdown. Undefined placeholders are an error.

The filled document is plain markdown (no code chunks), so the `quarto` CLI renders it when it
is on PATH; otherwise (and always in tests) pandoc from pypandoc-binary writes self-contained
HTML, and pandoc's typst writer plus the `typst` package write the PDF with the fonts in
`reports/fonts/` only (system and typst's embedded fonts ignored), tagged, with every figure's
alt text. The quarto branch only
builds the command (one `quarto render` per report and format); it is untested here because
quarto cannot be installed offline.

`render_reports` renders many documents of one template at once, as the company reports need
(one per company): a single `pandoc lua` process (the script `PANDOC_LUA`) reads every filled
document once and writes its HTML and typst markup, and one typst compiler per process, which
keeps its fonts and caches, compiles every PDF. Each document gives the same bytes as rendered
alone (`render_report` is the batch of one). The HTML is self-contained as with pandoc's
`--embed-resources`: figures are data URIs, the stylesheet is inline.

Long ids and hashes (a number's id, a pseudonym, a sha256) wrap rather than run off the page.
The HTML lets inline code (the ids) break anywhere it must (`overflow-wrap: anywhere`), and any
other word that would not fit, such as a hash in a title, break too (`break-word`). For the PDF,
the typst writer (`breakable` in `PANDOC_LUA`) sets inline code in boxes, each up to and
including its punctuation marks and at most 12 other characters long, and any run of 20 or more
hexadecimal digits (a hash) in other text in boxes of 8; a line may break between two boxes.
(Typst `show regex` rules did the same at about 10 ms more per company report.) No character
is added (a zero-width space would end up in the PDF's text, and in an id copied from it): the
ids stay as the tables and `scan trace` spell them, in the markdown, the HTML and the PDF's
text.

Output is deterministic: no dates in HTML or PDF (typst's document date is `none` and its
timestamp fixed), no random ids, and files are written atomically. `Rendered` lists the files
with their sha256 and the engine string, for the provenance record.
"""

import functools
import hashlib
import importlib.metadata
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import jinja2
import pypandoc
import typst

from pipeline.lineage.files import write_atomic
from pipeline.lineage.settings import REPORTS_DIR

FONTS_DIR = REPORTS_DIR / "fonts"
BUNDLED_PANDOC = Path(pypandoc.__file__).parent / "files" / "pandoc"
# Pin every pypandoc call in this process to the bundled pandoc (Debian's 2.17 lacks typst).
os.environ["PYPANDOC_PANDOC"] = str(BUNDLED_PANDOC)

FIXED_TIMESTAMP = 0  # typst's notion of "now"; the document itself carries no date
FORMATS = ("html", "pdf")

CSS = """\
html { font-family: "DejaVu Serif", Georgia, serif; font-size: 17px; line-height: 1.5;
  color: #1a1a1a; background: #fff; }
body { max-width: 46em; margin: 0 auto; padding: 1.5em 1em 4em; }
h1, h2, h3, caption, figcaption, th { font-family: "DejaVu Sans", Arial, sans-serif; }
h1.title { font-size: 1.9em; margin-bottom: 0.2em; }
h2 { margin-top: 2em; border-bottom: 1px solid #999; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em;
  font-variant-numeric: tabular-nums; }
caption { caption-side: top; text-align: left; font-weight: bold; padding-bottom: 0.4em; }
th, td { padding: 0.25em 0.7em; border-bottom: 1px solid #ccc; }
thead th { border-bottom: 2px solid #1a1a1a; }
figure { margin: 1.5em 0; }
code { overflow-wrap: anywhere; }
h1, h2, h3, p, li, figcaption { overflow-wrap: break-word; }
img { max-width: 100%; height: auto; }
figcaption { font-size: 0.9em; color: #444; }
@media print {
  html { font-size: 11pt; }
  body { max-width: none; padding: 0; }
  h2, h3 { break-after: avoid; }
  figure, tr { break-inside: avoid; }
  thead { display: table-header-group; }
}
"""

# Defaults for pandoc's typst template; a template's front matter overrides them.
TYPST_METADATA = """\
papersize: a4
margin: {x: 2.2cm, y: 2.5cm}
mainfont: DejaVu Serif
codefont: DejaVu Sans Mono
fontsize: 10pt
page-numbering: "1 / 1"
"""

TYPST_HEADER = """\
#set document(date: none)
#set table(inset: (x: 6pt, y: 3pt))
#show figure: set block(breakable: true)
#show heading: set text(font: "DejaVu Sans")
#show figure.caption: set text(font: "DejaVu Sans", size: 9pt)
#show table: set text(size: 9pt)
"""

# Run as `pandoc lua`: reads a job (JSON on stdin) and converts each `<stem>.qmd` of the working
# directory to `<stem>.html` and/or `<stem>.typ`, as `pandoc --standalone --embed-resources
# --css` resp. `--metadata-file --include-in-header` would, reading each document once.
PANDOC_LUA = """\
local job = pandoc.json.decode(io.read("a"), false)
local html_template = pandoc.template.compile(pandoc.template.default("html5"))
local typst_template = pandoc.template.compile(pandoc.template.default("typst"))
local typst_defaults = pandoc.read("---\\n" .. job.typst_metadata .. "---\\n", "markdown").meta

-- Quarto reads alt text from `fig-alt`; pandoc from `alt`.
local function alt(img)
  if img.attributes["fig-alt"] then
    img.attributes.alt = img.attributes["fig-alt"]
    img.attributes["fig-alt"] = nil
  end
  return img
end

-- Figures become data URIs after writing: the HTML writer escapes long attributes slowly.
local function embedded(doc)
  local uris = {}
  doc = doc:walk({
    Image = function(img)
      local mime, contents = pandoc.mediabag.fetch(img.src)
      table.insert(uris, pandoc.mediabag.make_data_uri(mime, contents))
      img.src = "embedded:" .. #uris
      return img
    end,
  })
  return doc, function(html)
    return (html:gsub('src="embedded:(%d+)"', function(i)
      return 'src="' .. uris[tonumber(i)] .. '"'
    end))
  end
end

-- pandoc's typst writer drops alt text; typst's `image(alt:)` puts it into the PDF's tags.
local function typst_string(text)
  return '"' .. text:gsub('[\\\\"]', '\\\\%0') .. '"'
end

local function with_alt(doc)
  local images = {}
  doc = doc:walk({
    Image = function(img)
      table.insert(images, { src = img.src, alt = img.attributes.alt or "" })
      img.src = "alt:" .. #images
      return img
    end,
  })
  return doc, function(markup)
    return (markup:gsub('image%("alt:(%d+)"', function(i)
      local image = images[tonumber(i)]
      local alt = image.alt ~= "" and ", alt: " .. typst_string(image.alt) or ""
      return "image(" .. typst_string(image.src) .. alt
    end))
  end
end

-- Long ids and hashes wrap in the PDF: inline code in boxes of at most 12 characters and the
-- punctuation after them, a run of 20 or more hexadecimal digits in other text in boxes of 8.
-- A line may break between two boxes; `;` ends each box's expression in typst markup.
local PUNCTUATION = "^[%[%](),.:;/_=<>%-]$"
local HEX = "[0-9a-f]"

local function pieces(text)
  local chars, out, piece = {}, {}, {}
  for _, code in utf8.codes(text) do
    table.insert(chars, utf8.char(code))
  end
  local others = 0
  for i, char in ipairs(chars) do
    local mark = char:match(PUNCTUATION) ~= nil
    if not mark and (others == 12 or (i > 1 and chars[i - 1]:match(PUNCTUATION))) then
      table.insert(out, table.concat(piece))
      piece, others = {}, 0
    end
    table.insert(piece, char)
    others = others + (mark and 0 or 1)
  end
  table.insert(out, table.concat(piece))
  return out
end

local breakable = {
  Code = function(code)
    local boxes = {}
    for _, piece in ipairs(pieces(code.text)) do
      table.insert(boxes, "#box(raw(" .. typst_string(piece) .. "));")
    end
    return pandoc.RawInline("typst", table.concat(boxes))
  end,
  Str = function(str)
    local function boxed(text)
      local before, hash, after = text:match("^(.-)(" .. HEX:rep(20) .. HEX .. "*)(.*)$")
      if not hash then
        return { pandoc.Str(text) }
      end
      local boxes = {}
      for i = 1, #hash, 8 do
        table.insert(boxes, "#box[" .. hash:sub(i, i + 7) .. "];")
      end
      local out = { pandoc.Str(before), pandoc.RawInline("typst", table.concat(boxes)) }
      for _, inline in ipairs(boxed(after)) do
        table.insert(out, inline)
      end
      return out
    end
    return str.text:match(HEX:rep(20)) and boxed(str.text) or nil
  end,
}

local write = {
  html = function(doc)
    local placeholders, embed = embedded(doc)
    return embed(pandoc.write(placeholders, "html5", {
      template = html_template,
      html_math_method = "mathml",
      variables = { ["header-includes"] = "<style>\\n" .. job.css .. "</style>" },
    }))
  end,
  typ = function(doc)
    for key, value in pairs(typst_defaults) do
      if doc.meta[key] == nil then
        doc.meta[key] = value
      end
    end
    local placeholders, add_alt = with_alt(doc:walk(breakable))
    return add_alt(pandoc.write(placeholders, "typst", {
      template = typst_template,
      variables = { ["header-includes"] = job.typst_header },
    }))
  end,
}

local function convert(stem)
  local doc = pandoc.read(pandoc.system.read_file(stem .. ".qmd"), "markdown")
  doc = doc:walk({ Image = alt })
  for _, ext in ipairs(job.outputs) do
    pandoc.system.write_file(stem .. "." .. ext, write[ext](doc))
  end
end

for _, stem in ipairs(job.stems) do
  local ok, err = pcall(convert, stem)
  if not ok then
    error(stem .. ".qmd: " .. tostring(err))
  end
end
"""


@dataclass(frozen=True)
class RenderedFile:
    format: str
    path: Path
    sha256: str


@dataclass(frozen=True)
class Rendered:
    files: tuple[RenderedFile, ...]
    engine: str
    source_sha256: str  # of the filled markdown

    def provenance(self) -> dict:
        """A JSON-ready record of what was written and by which engine."""
        return {
            "engine": self.engine,
            "source_sha256": self.source_sha256,
            "files": [
                {"format": f.format, "path": str(f.path), "sha256": f.sha256} for f in self.files
            ],
        }


def _escape_attr(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ")


def figure(fig: Sequence, caption: str, width: str = "100%") -> str:
    """Markdown for a figure: `fig` is `(path, alt)` as returned by pipeline.reporting.figures."""
    path, alt = fig
    if not alt.strip():
        raise ValueError(f"figure {path}: alt text is empty")
    return f'![{caption}]({Path(path).resolve()}){{fig-alt="{_escape_attr(alt)}" width={width}}}'


def fill_template(template: Path, context: dict) -> str:
    """The template with its placeholders filled; undefined names raise with the file name."""
    try:
        return _environment(template.parent).get_template(template.name).render(context)
    except jinja2.UndefinedError as error:
        raise ValueError(f"{template}: {error.message}") from error


@functools.cache
def _environment(folder: Path) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(folder),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
        # Quarto's `{#tbl-x}` labels would open Jinja comments; these comments are `{## ##}`.
        comment_start_string="{##",
        comment_end_string="##}",
    )
    env.globals["figure"] = figure
    return env


def render_report(
    template: Path,
    context: dict,
    out_dir: Path,
    stem: str,
    formats: Sequence[str] = FORMATS,
    engine: str = "auto",
) -> Rendered:
    """Fill `template` with `context` and write `out_dir/<stem>.<format>` for each format.

    `engine` is "auto" (quarto when on PATH, else pandoc/typst), "quarto" or "pandoc".
    """
    return render_reports(template, {stem: context}, out_dir, formats, engine)[stem]


def render_reports(
    template: Path,
    contexts: Mapping[str, dict],
    out_dir: Path,
    formats: Sequence[str] = FORMATS,
    engine: str = "auto",
) -> dict[str, Rendered]:
    """`render_report` for each `stem: context` of `contexts`, with one pandoc process for all.

    A report's files are written once all its formats rendered, so a failure leaves that
    report's previous files as they were (and the reports before it complete).
    """
    unknown = set(formats) - set(FORMATS)
    if unknown:
        raise ValueError(f"unknown format(s) {sorted(unknown)}; expected some of {FORMATS}")
    render = _render_quarto if _use_quarto(engine) else _render_pandoc
    description = engine_description(engine)
    sources = {stem: fill_template(template, context) for stem, context in contexts.items()}
    rendered = {}
    with tempfile.TemporaryDirectory(prefix="render-") as work:
        for stem, outputs in render(sources, formats, Path(work)):
            rendered[stem] = Rendered(
                files=tuple(_write(out_dir / f"{stem}.{fmt}", data) for fmt, data in outputs),
                engine=description,
                source_sha256=hashlib.sha256(sources[stem].encode("utf-8")).hexdigest(),
            )
    return rendered


def _write(path: Path, data: bytes) -> RenderedFile:
    write_atomic(path, lambda tmp: tmp.write_bytes(data))
    return RenderedFile(path.suffix.lstrip("."), path, hashlib.sha256(data).hexdigest())


Outputs = Iterator[tuple[str, list[tuple[str, bytes]]]]  # per stem, (format, bytes) per format


def _render_pandoc(sources: Mapping[str, str], formats: Sequence[str], work_dir: Path) -> Outputs:
    for stem, source in sources.items():
        (work_dir / f"{stem}.qmd").write_text(source, encoding="utf-8")
    (work_dir / "batch.lua").write_text(PANDOC_LUA, encoding="utf-8")
    job = {
        "stems": list(sources),
        "outputs": ["typ" if fmt == "pdf" else fmt for fmt in formats],
        "css": CSS,
        "typst_metadata": TYPST_METADATA,
        "typst_header": TYPST_HEADER,
    }
    env = {**os.environ, "SOURCE_DATE_EPOCH": str(FIXED_TIMESTAMP)}
    result = subprocess.run(
        [str(BUNDLED_PANDOC), "lua", "batch.lua"],
        cwd=work_dir,
        env=env,
        input=json.dumps(job).encode("utf-8"),
        capture_output=True,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"pandoc failed: {result.stderr.decode()}")
    for stem in sources:
        yield stem, [(fmt, _pandoc_output(work_dir, stem, fmt)) for fmt in formats]


def _pandoc_output(work_dir: Path, stem: str, fmt: str) -> bytes:
    if fmt == "html":
        return (work_dir / f"{stem}.html").read_bytes()
    markup = (work_dir / f"{stem}.typ").read_bytes()
    return _typst_compiler().compile(markup, format="pdf", timestamp=FIXED_TIMESTAMP)


@functools.cache
def _typst_compiler() -> typst.Compiler:
    """One compiler per process: it keeps the fonts and what it parsed (and checks files for
    changes). Figure paths are absolute, so the root is the filesystem root."""
    fonts = typst.Fonts(
        include_system_fonts=False, include_embedded_fonts=False, font_paths=[str(FONTS_DIR)]
    )
    return typst.Compiler(root=Path(FONTS_DIR.anchor), font_paths=fonts, ignore_system_fonts=True)


def _render_quarto(sources: Mapping[str, str], formats: Sequence[str], work_dir: Path) -> Outputs:
    """Quarto branch, untested here: quarto renders each filled .qmd beside itself."""
    (work_dir / "report.css").write_text(CSS, encoding="utf-8")
    for stem, source in sources.items():
        qmd = work_dir / f"{stem}.qmd"
        qmd.write_text(source, encoding="utf-8")
        yield stem, [(fmt, _quarto(qmd, fmt, work_dir)) for fmt in formats]


def _quarto(qmd: Path, fmt: str, work_dir: Path) -> bytes:
    output = f"{qmd.stem}.{fmt}"
    to = "typst" if fmt == "pdf" else "html"
    if fmt == "html":
        extra = ["-M", "embed-resources:true", "-M", "css:report.css"]
    else:
        extra = ["-M", f"font-paths:{FONTS_DIR}"]
    subprocess.run(
        ["quarto", "render", qmd.name, "--to", to, "--output", output, *extra],
        cwd=work_dir,
        check=True,
        capture_output=True,
    )
    return (work_dir / output).read_bytes()


def _use_quarto(engine: str) -> bool:
    if engine not in ("auto", "quarto", "pandoc"):
        raise ValueError(f"engine {engine!r}: expected 'auto', 'quarto' or 'pandoc'")
    return engine == "quarto" or (engine == "auto" and shutil.which("quarto") is not None)


def engine_description(engine: str = "auto") -> str:
    """The engine (with versions) that `render_report(..., engine=engine)` uses here; known
    before rendering, so a report's provenance appendix can name it."""
    return quarto_engine() if _use_quarto(engine) else pandoc_engine()


@functools.cache
def pandoc_engine() -> str:
    pandoc = pypandoc.get_pandoc_version()
    binary = importlib.metadata.version("pypandoc-binary")
    typst_py = importlib.metadata.version("typst")
    compiler = typst.eval(b"", "str(sys.version)").strip('"')
    return f"pandoc {pandoc} (pypandoc-binary {binary}) + typst {compiler} (typst-py {typst_py})"


@functools.cache
def quarto_engine() -> str:
    version = subprocess.run(["quarto", "--version"], capture_output=True, text=True, check=True)
    return f"quarto {version.stdout.strip()}"
