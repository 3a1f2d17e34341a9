"""Interoperable exports of the de-identified gold tables: OneRoster 1.1 CSV and xAPI 1.0.3.

Readers (the HTTP API) need only this package's top level, which imports neither
pyarrow nor pyiceberg:

    from spanda_assets.lib.exports import EXPORT_KINDS, latest_export
    info = latest_export("oneroster")  # ExportInfo | None

Modules: `store` (layout under SPANDA_HOME/exports, atomic placement, the reader API),
`build` (one export run: sources, key, write, audit with the submission validator,
placement), `oneroster` and `xapi` (the mappings, over Arrow batches), `spill`
(bounded-memory sorted distinct keys), `common` (dates from years, numbers, files).
"""

from spanda_assets.lib.exports.store import (
    EXPORT_KINDS,
    EXPORT_SOURCES,
    ExportFile,
    ExportInfo,
    export_root,
    latest_export,
    remove_exports,
)

__all__ = [
    "EXPORT_KINDS",
    "EXPORT_SOURCES",
    "ExportFile",
    "ExportInfo",
    "export_root",
    "latest_export",
    "remove_exports",
]
