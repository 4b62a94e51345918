"""Stage 3, privacy: keyed pseudonyms, the privacy boundary, disclosure control of the shareable
data and small-cell rules for what reports print. Imports earlier stages and the shared base."""
