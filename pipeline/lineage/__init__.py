"""Lineage, the shared base of every stage: paths, atomic private writes, content hashes, the
files each output recorded and the provenance crate. Imports nothing of the pipeline but itself."""
