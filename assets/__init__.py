"""The Dagster layer: thin assets, checks, resources and the `scan` CLI over `pipeline/`."""

import warnings

import dagster as dg

# Output(data_version=...) is "beta" and partitioned asset checks are "preview" in Dagster 1.13;
# both are the documented ways to do what we need, so their warnings are noise to our users.
warnings.filterwarnings("ignore", category=dg.BetaWarning)
warnings.filterwarnings("ignore", category=dg.PreviewWarning)
