"""FAIR publication: declared datasets, their DataCite metadata, and DOIs.

Plain functions and classes, no Dagster: `datasets` reads what the steward declared,
`datacite` turns a declaration and one version's facts into DataCite 4.5 metadata,
and `doi` mints and registers the DOIs (offline by default, DataCite when configured).
"""
