"""Validation stage: gold.validated_* tables, their quarantine and data contracts."""
