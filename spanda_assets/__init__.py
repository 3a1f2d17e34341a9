"""Spanda: EdTech data platform as a Dagster asset graph."""
