"""Stage 2, validate: data contracts, quality rules, the quarantine and the expectations an
auditor reads. Imports `ingest` and the shared base."""
