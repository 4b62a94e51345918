"""Waves are dynamic partitions: a wave exists once its folder under data/raw/ has an export."""

import dagster as dg

waves = dg.DynamicPartitionsDefinition(name="waves")
