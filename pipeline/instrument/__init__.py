"""The instrument, the shared base of every stage: what the codebook declares and how a scale
score is computed from it. Imports nothing of the pipeline but `lineage`."""
