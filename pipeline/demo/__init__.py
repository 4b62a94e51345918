"""The demo scan: a fictitious consortium of technical SMEs in three waves, simulated from one seed,
written as real exports with their ground truth. Imports only the shared base."""
