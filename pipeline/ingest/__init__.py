"""Stage 1, ingest: survey exports (.sav, .csv, .xlsx) into one canonical frame per wave, and a
first codebook drafted from them. Imports only the shared base (`instrument`, `lineage`)."""
