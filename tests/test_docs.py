"""The README and the guides in docs/ are checked like code.

- Every command shown in a fenced ```bash block runs: the README's install and test commands
  are exactly the lines `.ci/run` runs, and every other one is run here, in document order, in
  a copy of a demo project on which `scan run` has completed, and must exit 0. A block that is
  only an example (installing, servers, deployment, benchmarks, a user's own files) says so in
  its info string: ```bash example.
- Every relative link resolves to a file, and its #anchor to a heading of that file.
- Every repository path in inline code (`pipeline/...`, `tests/...`, ...) exists.
"""

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import NamedTuple

from conftest import ROOT, SCAN, ScanRun, scan_env

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "reports" / "README.md"]
CI_RUN = ROOT / ".ci" / "run"
# Inline paths that must exist; what a run writes (reports/output/, data/processed/, staging)
# is not in the repository.
REPO_PATH = re.compile(r"`((?:pipeline|assets|tests|bench|deploy|reports|docs|data/raw)/[^`\s]*)`")
RUNTIME = ("reports/output", "data/raw/_staging")
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)|!\[[^\]]*\]\(([^)\s]+)\)")


class Block(NamedTuple):
    page: Path
    line: int
    info: str
    text: str


def blocks(page: Path) -> list[Block]:
    """The fenced code blocks of a Markdown page, with the line each opens on."""
    found, opened, body = [], None, []
    for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1):
        if opened is None and line.startswith("```"):
            opened, body = (number, line[3:].strip()), []
        elif opened is not None and line.strip() == "```":
            found.append(Block(page, opened[0], opened[1], "\n".join(body)))
            opened = None
        elif opened is not None:
            body.append(line)
    assert opened is None, f"{page.name}:{opened[0]}: a code block that is never closed"
    return found


def prose(page: Path) -> str:
    """The page without its fenced code blocks."""
    return re.sub(r"^```.*?^```[ \t]*$", "", page.read_text(encoding="utf-8"), flags=re.S | re.M)


def commands(pages: list[Path], root: Path = ROOT) -> list[tuple[str, str]]:
    """(where, command) for every line of every ```bash block that is not an example."""
    return [
        (f"{block.page.relative_to(root)}:{block.line + offset}", line.strip())
        for page in pages
        for block in blocks(page)
        if block.info.split()[:1] == ["bash"] and "example" not in block.info.split()[1:]
        for offset, line in enumerate(block.text.splitlines(), 1)
        if line.strip() and not line.lstrip().startswith("#")
    ]


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*]|\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    return {slug(m[1]) for m in re.finditer(r"^#{1,6} (.+)$", prose(page), flags=re.M)}


def broken_links(page: Path) -> list[str]:
    broken = []
    for match in LINK.finditer(re.sub(r"`[^`\n]*`", "", prose(page))):  # not in inline code
        target = match[1] or match[2]
        if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            broken.append(f"{page.name}: {target}: no such file")
        elif anchor and file.suffix == ".md" and anchor not in anchors(file):
            broken.append(f"{page.name}: {target}: no heading #{anchor} in {file.name}")
    return broken


def missing_paths(page: Path) -> list[str]:
    return [
        f"{page.name}: `{path}` does not exist"
        for path in REPO_PATH.findall(prose(page))
        if not any(mark in path for mark in ("<", "*", "..."))
        and not path.startswith(RUNTIME)
        and not (ROOT / path.rstrip("/").split(":")[0]).exists()
    ]


def ci_commands() -> list[str]:
    return [
        line.strip()
        for line in CI_RUN.read_text().splitlines()
        if line.strip() and not line.startswith(("#", "set ", "cd "))
    ]


def test_the_docs_exist_and_the_readme_links_every_guide():
    guides = {p.name for p in PAGES[1:-1]}
    assert {"steward.md", "researcher.md", "auditor.md", "company.md", "developer.md"} <= guides
    readme = prose(ROOT / "README.md")
    assert all(f"docs/{name}" in readme for name in guides - {"README.md"})


def test_every_link_and_path_in_the_docs_resolves():
    assert [b for page in PAGES for b in broken_links(page)] == []
    assert [m for page in PAGES for m in missing_paths(page)] == []


def test_the_readme_shows_what_ci_runs():
    """CI proves the README: its install and test commands are `.ci/run`'s, in order."""
    shown = [command for _, command in commands(PAGES[:1]) if not command.startswith("scan ")]
    assert shown == ci_commands()


def test_every_command_in_the_guides_runs(scan_run: ScanRun, tmp_path):
    """Each shown `scan` command, on a copy of the CLI's demo project laid out as the defaults
    expect it (data/, reports/output/, .dagster/)."""
    project = tmp_path / "project"
    shutil.copytree(scan_run.data, project / "data")
    shutil.copytree(scan_run.reports, project / "reports" / "output")
    shutil.copytree(scan_run.home, project / ".dagster")
    env = scan_env(project / ".dagster")
    env["PATH"] = f"{Path(SCAN).parent}{os.pathsep}{env['PATH']}"
    shown = commands(PAGES)
    ci = set(ci_commands())
    others = [(where, c) for where, c in shown if c not in ci and not c.startswith("scan ")]
    assert others == [], "run them here or mark their block ```bash example"
    ran = set()
    for where, command in shown:
        if command in ci or command in ran:
            continue
        ran.add(command)
        done = subprocess.run(
            ["bash", "-c", command], cwd=project, env=env, capture_output=True, text=True,
            timeout=600,
        )  # fmt: skip
        assert done.returncode == 0, f"{where}: {command}\n{done.stdout}\n{done.stderr}"
    assert {"scan run", "scan status"} <= ran


def test_the_checks_find_what_is_wrong(tmp_path):
    page = tmp_path / "docs" / "page.md"
    page.parent.mkdir()
    (tmp_path / "docs" / "other.md").write_text("# Other page\n\n## Some `snake_case`, here\n")
    page.write_text(
        "# Page\n\nSee [other](other.md#some-snake_case-here), [gone](gone.md), "
        "[bad anchor](other.md#nowhere), [self](#page), [web](https://example.org) and "
        "`an_id[2021](x).y` in code.\n"
        "The module `pipeline/no_such_module.py`, but not `pipeline/<stage>/` or "
        "`reports/output/x.html`.\n\n"
        "```bash\nscan status\n# a comment\n```\n\n```bash example\npip install x\n```\n\n"
        "```text\nscan run\n```\n\n```bash\n[link](gone.md)\n```\n"
    )
    assert broken_links(page) == [
        "page.md: gone.md: no such file",
        "page.md: other.md#nowhere: no heading #nowhere in other.md",
    ]
    assert missing_paths(page) == ["page.md: `pipeline/no_such_module.py` does not exist"]
    assert commands([page], tmp_path) == [
        ("docs/page.md:7", "scan status"),
        ("docs/page.md:20", "[link](gone.md)"),
    ]
