"""Autoloaded Dagster definitions, one folder per stage of the asset chain."""
