"""Render a report template (Quarto markdown + Jinja2 placeholders) to HTML and PDF.

Templates live in `reports/` (`wave.qmd`, `company.qmd`). A template only lays out what assets
computed beforehand: `context` holds numbers, pre-made markdown tables (strings) and figures
(`pipeline.figures.FigureFile`, i.e. `(path, alt)`). Inside a template:

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
`reports/fonts/` only (system and typst's embedded fonts ignored). The quarto branch only
builds the command; it is untested here because quarto cannot be installed offline.

Output is deterministic: no dates in HTML or PDF (typst's document date is `none` and its
timestamp fixed), no random ids, and files are written atomically. `Rendered` lists the files
with their sha256 and the engine string, for the provenance record.
"""

import hashlib
import importlib.metadata
import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import jinja2
import pypandoc
import typst

from pipeline.files import write_atomic

REPORTS_DIR = Path(__file__).resolve().parent.parent / "reports"
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

# Quarto reads alt text from `fig-alt`; pandoc from `alt`.
ALT_FILTER = """\
function Image(img)
  if img.attributes["fig-alt"] then
    img.attributes.alt = img.attributes["fig-alt"]
    img.attributes["fig-alt"] = nil
  end
  return img
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
    """Markdown for a figure: `fig` is `(path, alt)` as returned by pipeline.figures."""
    path, alt = fig
    if not alt.strip():
        raise ValueError(f"figure {path}: alt text is empty")
    return f'![{caption}]({Path(path).resolve()}){{fig-alt="{_escape_attr(alt)}" width={width}}}'


def fill_template(template: Path, context: dict) -> str:
    """The template with its placeholders filled; undefined names raise with the file name."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(template.parent),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
        # Quarto's `{#tbl-x}` labels would open Jinja comments; these comments are `{## ##}`.
        comment_start_string="{##",
        comment_end_string="##}",
    )
    env.globals["figure"] = figure
    try:
        return env.get_template(template.name).render(context)
    except jinja2.UndefinedError as error:
        raise ValueError(f"{template}: {error.message}") from error


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
    unknown = set(formats) - set(FORMATS)
    if unknown:
        raise ValueError(f"unknown format(s) {sorted(unknown)}; expected some of {FORMATS}")
    use_quarto = _use_quarto(engine)
    source = fill_template(template, context)
    with tempfile.TemporaryDirectory(prefix="render-") as work:
        work_dir = Path(work)
        qmd = work_dir / f"{stem}.qmd"
        qmd.write_text(source, encoding="utf-8")
        (work_dir / "report.css").write_text(CSS, encoding="utf-8")
        render = _render_quarto if use_quarto else _render_pandoc
        outputs = {fmt: render(qmd, fmt, work_dir) for fmt in formats}
    # Only once every format rendered, so a failure leaves all previous files as they were.
    written = []
    for fmt, data in outputs.items():
        path = write_atomic(out_dir / f"{stem}.{fmt}", lambda tmp, data=data: tmp.write_bytes(data))
        written.append(RenderedFile(fmt, path, hashlib.sha256(data).hexdigest()))
    return Rendered(
        files=tuple(written),
        engine=engine_description(engine),
        source_sha256=hashlib.sha256(source.encode("utf-8")).hexdigest(),
    )


def _pandoc(args: list[str], cwd: Path) -> bytes:
    env = {**os.environ, "SOURCE_DATE_EPOCH": str(FIXED_TIMESTAMP)}
    result = subprocess.run(
        [str(BUNDLED_PANDOC), *args], cwd=cwd, env=env, capture_output=True, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"pandoc {' '.join(args)} failed: {result.stderr.decode()}")
    return result.stdout


def _render_pandoc(qmd: Path, fmt: str, work_dir: Path) -> bytes:
    (work_dir / "alt.lua").write_text(ALT_FILTER, encoding="utf-8")
    common = [qmd.name, "--from=markdown", "--standalone", "--lua-filter=alt.lua"]
    if fmt == "html":
        return _pandoc(
            [
                *common,
                "--to=html5",
                "--embed-resources",
                "--css=report.css",
                "--variable=document-css:false",
                "--mathml",
            ],
            work_dir,
        )
    (work_dir / "typst.yaml").write_text(TYPST_METADATA, encoding="utf-8")
    (work_dir / "header.typ").write_text(TYPST_HEADER, encoding="utf-8")
    markup = _pandoc(
        [*common, "--to=typst", "--metadata-file=typst.yaml", "--include-in-header=header.typ"],
        work_dir,
    )
    return _compile_typst(markup)


def _compile_typst(markup: bytes) -> bytes:
    """PDF from typst markup; figure paths are absolute, so the root is the filesystem root."""
    fonts = typst.Fonts(
        include_system_fonts=False, include_embedded_fonts=False, font_paths=[str(FONTS_DIR)]
    )
    return typst.compile(
        markup,
        root=Path(FONTS_DIR.anchor),
        font_paths=fonts,
        ignore_system_fonts=True,
        format="pdf",
        timestamp=FIXED_TIMESTAMP,
    )


def _render_quarto(qmd: Path, fmt: str, work_dir: Path) -> bytes:
    """Quarto branch, untested here: quarto renders the filled .qmd beside itself."""
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


def pandoc_engine() -> str:
    pandoc = pypandoc.get_pandoc_version()
    binary = importlib.metadata.version("pypandoc-binary")
    typst_py = importlib.metadata.version("typst")
    compiler = typst.eval(b"", "str(sys.version)").strip('"')
    return f"pandoc {pandoc} (pypandoc-binary {binary}) + typst {compiler} (typst-py {typst_py})"


def quarto_engine() -> str:
    version = subprocess.run(["quarto", "--version"], capture_output=True, text=True, check=True)
    return f"quarto {version.stdout.strip()}"
