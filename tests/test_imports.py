"""The import rule of `pipeline/`, read from the source: it never imports `dagster` or `assets`;
the shared base (`lineage`, then `instrument`) imports only the base before it; each stage
package imports only the stages before it and the base; `demo` only the base. Every module lives
in one of these packages, so a new module has to take a place in the order."""

import ast
import subprocess
import sys
from pathlib import Path

from conftest import ROOT

BASE = ("lineage", "instrument")
STAGES = ("ingest", "validate", "privacy", "psychometrics", "models", "reporting")
FORBIDDEN = ("dagster", "assets")


def allowed(package: str) -> set[str]:
    """The packages of `pipeline` that modules of `package` may import, itself included."""
    if package in BASE:
        return set(BASE[: BASE.index(package) + 1])
    if package in STAGES:
        return {*BASE, *STAGES[: STAGES.index(package) + 1]}
    if package == "demo":
        return {*BASE, "demo"}
    raise AssertionError(f"pipeline/{package} is neither the base, a stage nor demo")


def imported(tree: ast.AST, module: str) -> list[tuple[int, str]]:
    """Every module an import names (also inside functions), as an absolute dotted name."""
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the importing module's package
                base = module.split(".")[: -node.level]
                node_module = ".".join([*base, *filter(None, [node.module])])
            else:
                node_module = node.module
            if node_module == "pipeline":  # from pipeline import models: the package is a name
                names += [(node.lineno, f"pipeline.{alias.name}") for alias in node.names]
            else:
                names.append((node.lineno, node_module))
    return names


def violations(root: Path) -> list[str]:
    """Each import under `root/pipeline` that breaks the rule, as `path:line: why`."""
    found = []
    for path in sorted((root / "pipeline").rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        module = ".".join(p for p in parts if p != "__init__")
        where = path.relative_to(root)
        if len(parts) == 2:  # pipeline/<module>.py: only the package's own __init__
            if parts[1] != "__init__":
                found.append(f"{where}: a module outside every stage package")
            continue
        package = parts[1]
        try:
            may = allowed(package)
        except AssertionError as unknown:
            found.append(f"{where}: {unknown}")
            continue
        for line, name in imported(ast.parse(path.read_text(encoding="utf-8")), module):
            top, *rest = name.split(".")
            if top in FORBIDDEN:
                found.append(f"{where}:{line}: imports {name} (pipeline/ never imports {top})")
            elif top == "pipeline" and rest and rest[0] not in may:
                found.append(
                    f"{where}:{line}: imports {name}, but {package} may import only "
                    f"{', '.join(sorted(may))}"
                )
    return found


def test_pipeline_follows_the_import_rule():
    assert (ROOT / "pipeline" / "reporting" / "render.py").is_file()  # the rule reads the tree
    assert violations(ROOT) == []


def test_the_rule_finds_each_kind_of_violation(tmp_path):
    def module(relative: str, source: str) -> None:
        path = tmp_path / "pipeline" / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source)

    module("__init__.py", "")
    module("loose.py", "")
    module("lineage/files.py", "import pipeline.instrument.codebook\n")
    module(
        "validate/quality.py", "from pipeline.ingest import readers\nfrom ..lineage import files\n"
    )
    module("privacy/anonymise.py", "def f():\n    from pipeline.reporting.render import x\n")
    module("models/fit.py", "from pipeline import reporting\nimport dagster as dg\n")
    module(
        "demo/write.py", "from assets.definitions import ALL_ASSETS\nfrom ..ingest import readers\n"
    )
    module("extras/x.py", "")
    found = violations(tmp_path)
    assert found == [
        "pipeline/demo/write.py:1: imports assets.definitions (pipeline/ never imports assets)",
        "pipeline/demo/write.py:2: imports pipeline.ingest, but demo may import only "
        "demo, instrument, lineage",
        "pipeline/extras/x.py: pipeline/extras is neither the base, a stage nor demo",
        "pipeline/lineage/files.py:1: imports pipeline.instrument.codebook, but lineage may import "
        "only lineage",
        "pipeline/loose.py: a module outside every stage package",
        "pipeline/models/fit.py:1: imports pipeline.reporting, but models may import only "
        "ingest, instrument, lineage, models, privacy, psychometrics, validate",
        "pipeline/models/fit.py:2: imports dagster (pipeline/ never imports dagster)",
        "pipeline/privacy/anonymise.py:2: imports pipeline.reporting.render, but privacy may "
        "import only ingest, instrument, lineage, privacy, validate",
    ]


# imported inside the functions that use them, so that `scan` starts fast (docs/developer.md)
LATE = ("matplotlib", "statsmodels", "scipy.stats", "openpyxl")


def test_scan_starts_without_the_libraries_only_some_steps_need():
    """What `scan` imports before any command runs (the asset definitions, `pipeline/` with
    them) leaves out the slow imports that only drawing, model fitting or reading Excel need."""
    listed = f"import sys, assets.cli; print(*[m for m in {LATE!r} if m in sys.modules])"
    done = subprocess.run([sys.executable, "-c", listed], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == []
    drawn = "import sys, pipeline.reporting.figures; print('matplotlib' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", drawn], capture_output=True, text=True,
                          cwd=ROOT).stdout.strip() == "True"  # fmt: skip
