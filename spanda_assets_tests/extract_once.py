"""Run one extract in a fresh process (for the crash tests): `python -m ... NAME`.

Configuration comes from the environment exactly as in production
(SPANDA_SOURCE_URL, SPANDA_CATALOG_URI, SPANDA_WAREHOUSE, SPANDA_BATCH_ROWS,
SPANDA_COMMIT_ROWS, SPANDA_FAULT).
"""

from __future__ import annotations

import sys

from spanda_assets import settings
from spanda_assets.lib.extract import extract_table
from spanda_assets.lib.lakehouse import CatalogConfig, open_catalog
from spanda_assets.lib.readers import make_reader
from spanda_assets.lib.source_db import make_engine
from spanda_assets.lib.sources import load_sources


def main(name: str) -> None:
    url = settings.source_url()
    engine = make_engine(url)
    source = {s.name: s for s in load_sources()}[name]
    result = extract_table(
        engine=engine,
        reader=make_reader("auto", url, engine),
        catalog=open_catalog(CatalogConfig.from_env()),
        source=source,
        batch_rows=settings.env_int(settings.ENV_BATCH_ROWS, settings.DEFAULT_BATCH_ROWS),
        commit_rows=settings.env_int(settings.ENV_COMMIT_ROWS, settings.DEFAULT_COMMIT_ROWS),
    )
    print(result.rows_inserted, result.rows_updated, result.total_rows)


if __name__ == "__main__":
    main(sys.argv[1])
