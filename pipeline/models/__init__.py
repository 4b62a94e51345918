"""Stage 5, models: multilevel models of the learning outcomes, a fast engine and a guarded
statsmodels one, agreeing with lme4. Imports earlier stages and the shared base."""
