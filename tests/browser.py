"""Headless Chromium (Debian's `chromium`, installed by .ci/run) for the report tests."""

import subprocess
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlsplit


def run_chromium(
    chromium: str, page: Path | str, profile: Path, *action: str, dom: Path | None = None
) -> str:
    """Load `page`, an HTML file or a URL, headless with every host unresolvable but the URL's
    own (Chromium applies the rule to IP literals too); return Chromium's log (stderr). With
    `dom`, write the page's DOM there as it stands when loaded (`--dump-dom`)."""
    rules = "MAP * ~NOTFOUND"
    if not isinstance(page, Path):
        rules += f", EXCLUDE {urlsplit(page).hostname}"
    result = subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            f"--user-data-dir={profile}",
            f"--host-resolver-rules={rules}",
            "--enable-logging=stderr",
            "--v=0",
            *action,
            *(["--dump-dom"] if dom else []),
            page.as_uri() if isinstance(page, Path) else page,
        ],
        capture_output=True,
        text=True,
        timeout=90,
        check=True,
    )
    if dom:
        dom.write_text(result.stdout)
    return result.stderr


class _Tables(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tables: list[list[list[str]]] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables.append([])
        elif tag == "tr" and self.tables:
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None and self.tables:
            self.tables[-1][-1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def html_tables(html: str) -> list[list[list[str]]]:
    """Every table of an HTML page as rows of cell texts (the header row first)."""
    parser = _Tables()
    parser.feed(html)
    return parser.tables
