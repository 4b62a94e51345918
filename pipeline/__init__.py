"""The science of the scan, free of Dagster: the shared base (`instrument`, `lineage`) and one
package per stage, in order: ingest, validate, privacy, psychometrics, models, reporting; and
`demo`, the generator of the demo scan. `tests/test_imports.py` holds every import to that order."""
