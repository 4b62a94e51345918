"""Stage 6, reporting: the wave and company reports (their numbers, figures and rendering) and
their delivery. Imports earlier stages and the shared base."""
