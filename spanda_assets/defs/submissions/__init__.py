"""Submission pipeline: inbox sensor, validation report, de-identified ingest."""
