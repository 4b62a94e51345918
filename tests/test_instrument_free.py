"""No item, scale, background variable, value or column of the demo instrument is named in the
code: everything the pipeline knows of an instrument comes from its codebook.

Every string literal in `pipeline/` and `assets/` (docstrings aside) is compared with every name
the demo codebook declares. `pipeline/demo/` is left out: it is the generator of the demo
instrument's exports, so it is about that instrument by design.
"""

import ast
from pathlib import Path

from conftest import CODEBOOK, ROOT

from pipeline.instrument.codebook import load_codebook

GENERATOR = ROOT / "pipeline" / "demo"
# Plain words the demo codebook happens to use as names, which the code uses in its own sense.
OWN_WORDS = {
    "test": "the quality rule for test responses (a reason code)",
    "management": "the codebook section `management:` and a role in the company reports",
    "status": "a table header of the wave report",
    "name": "a key of GX suites and of RO-Crate entities",
    "company_name": "the company report template's title placeholder",
}


def demo_names() -> set[str]:
    cb = load_codebook(CODEBOOK)
    names = {*cb.items, *cb.scales, *cb.background, *cb.columns, *cb.platform.values()}
    names |= {alias for column in cb.columns.values() for alias in column.aliases}
    names |= {value for variable in cb.background.values() for value in variable.levels}
    names |= {value for variable in cb.background.values() for value in variable.values}
    names |= {*cb.quality.test_company_codes, *cb.quality.test_respondent_codes}
    names |= {cb.company_register, cb.register_name, cb.register_contact, *cb.waves} - {None}
    return names


def string_literals(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and id(node) not in docstrings
    ]


def test_the_code_names_nothing_of_the_demo_instrument():
    names = demo_names()
    assert {"LT1", "leader", "duration_s", "ja", "StartDate"} <= names  # the net is cast wide
    files = [p for folder in ("pipeline", "assets") for p in sorted((ROOT / folder).rglob("*.py"))]
    found = [
        f"{path.relative_to(ROOT)}:{line}: {value!r}"
        for path in files
        if GENERATOR not in path.parents
        for line, value in string_literals(path)
        if value in names and value.casefold() not in OWN_WORDS
    ]
    assert not found, "demo names in the code:\n" + "\n".join(found)
