"""A Great Expectations validation result as one self-contained HTML page.

GX's own Data Docs load their CSS and scripts from CDNs and render unstyled offline; this page
has inline CSS only and no reference to anything outside itself, so an auditor can open it
from a USB stick. It shows the result as recorded, sorted as recorded; same input, same page.
"""

import math

import jinja2

TEMPLATE = """\
<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{{ title }}</title>
<style>
body { font-family: sans-serif; margin: 2em; color: #222; }
h1 { font-size: 1.5em; }
dl { display: grid; grid-template-columns: max-content auto; gap: .2em 1em; }
dt { font-weight: bold; }
dd { margin: 0; }
table { border-collapse: collapse; width: 100%; font-size: .9em; }
th, td { border: 1px solid #ccc; padding: .3em .5em; text-align: left; vertical-align: top; }
th { background: #eee; }
.passed { background: #e3f4e6; color: #14532d; font-weight: bold; }
.failed { background: #fde4e1; color: #7f1d1d; font-weight: bold; }
.kwargs { font-family: monospace; overflow-wrap: anywhere; }
</style>
</head>
<body>
<h1>{{ title }}</h1>
<dl>
<dt>Suite</dt><dd>{{ suite }}</dd>
{% for label, value in facts %}<dt>{{ label }}</dt><dd>{{ value }}</dd>
{% endfor %}<dt>Overall</dt><dd class="{{ overall }}">{{ overall }}</dd>
<dt>Expectations</dt>
<dd>{{ passed }} passed, {{ failed|length }} failed, {{ rows|length }} in all</dd>
{% if failed %}<dt>Failed</dt>
<dd>{% for row in failed %}<a href="#e{{ row.number }}">#{{ row.number }}</a> {{ row.type }}
{{ row.column }}<br>{% endfor %}</dd>
{% endif %}</dl>
<table>
<thead><tr><th>#</th><th>Expectation</th><th>Column</th><th>Settings</th><th>Result</th>
<th>Observed</th><th>Unexpected</th><th>Why</th></tr></thead>
<tbody>
{% for row in rows %}<tr id="e{{ row.number }}">
<td>{{ row.number }}</td><td>{{ row.type }}</td><td>{{ row.column }}</td>
<td class="kwargs">{% for key, value in row.kwargs %}{{ key }}: {{ value }}<br>{% endfor %}</td>
<td class="{{ row.outcome }}">{{ row.outcome }}</td>
<td>{{ row.observed }}</td><td>{{ row.unexpected }}</td><td>{{ row.why }}</td>
</tr>
{% endfor %}</tbody>
</table>
</body>
</html>
"""

_ENVIRONMENT = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)


def render_validation_page(result: dict, title: str) -> str:
    """The page for a `to_json_dict()` validation result."""
    meta = result.get("meta", {})
    facts = [
        ("Wave", meta.get("wave")),
        ("Instrument", meta.get("instrument")),
        ("Codebook version", meta.get("codebook_version")),
        ("Great Expectations", meta.get("great_expectations_version")),
    ]
    rows = [_row(number, r) for number, r in enumerate(result.get("results", []), start=1)]
    failed = [row for row in rows if row["outcome"] == "failed"]
    return _ENVIRONMENT.from_string(TEMPLATE).render(
        title=title,
        suite=result.get("suite_name", ""),
        facts=[(label, value) for label, value in facts if value],
        overall="passed" if result.get("success") else "failed",
        passed=len(rows) - len(failed),
        failed=failed,
        rows=rows,
    )


def _row(number: int, validation: dict) -> dict:
    config = validation["expectation_config"]
    kwargs = config.get("kwargs", {})
    outcome = validation.get("result", {})
    errors = _errors(validation.get("exception_info", {}))
    unexpected = ""
    if "unexpected_count" in outcome:
        unexpected = str(outcome["unexpected_count"])
        if outcome.get("unexpected_percent") is not None:  # None when every value is missing
            unexpected += f" ({_text(outcome['unexpected_percent'])} %)"
        values = [c for c in outcome.get("partial_unexpected_counts", []) if c["value"] is not None]
        if values:
            unexpected += "; values: " + ", ".join(
                f"{_text(c['value'])} ({c['count']}×)" for c in values
            )
    observed = _text(outcome.get("observed_value", ""))
    mismatched = outcome.get("details", {}).get("mismatched")
    if mismatched:
        observed = "; ".join(f"{key}: {_text(names)}" for key, names in mismatched.items())
    return {
        "number": number,
        "type": config["type"],
        "column": kwargs.get("column", ""),
        "kwargs": [(k, _text(v)) for k, v in kwargs.items() if k not in ("batch_id", "column")],
        "outcome": "passed" if validation.get("success") else "failed",
        "observed": "error: " + "; ".join(errors) if errors else observed,
        "unexpected": unexpected,
        "why": config.get("meta", {}).get("why", ""),
    }


def _errors(info: dict) -> list[str]:
    """Exception messages; GX gives one record, or one per failed metric."""
    records = [info, *(v for v in info.values() if isinstance(v, dict))]
    return sorted({r["exception_message"] for r in records if r.get("raised_exception")})


def _text(value) -> str:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.4g}"
    if isinstance(value, list | tuple):
        return ", ".join(_text(v) for v in value)
    return str(value)
