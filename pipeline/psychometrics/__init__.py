"""Stage 4, psychometrics: reliability, CFA, measurement invariance and company aggregates,
agreeing with R (psych, lavaan, multilevel). Imports earlier stages and the shared base."""
