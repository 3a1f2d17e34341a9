"""Business intelligence over the lakehouse: the DuckDB file BI tools read (refresh.py)
and the Superset dashboard built over it through Superset's REST API (superset.py).
Decision 0034, docs/bi.md."""
