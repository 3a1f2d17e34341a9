"""Errors a user can act on.

Each error names the table (and column, row where known) and says what to do.
They are raised *before* anything is written, so a failed run leaves the
lakehouse exactly as it was.
"""

from __future__ import annotations

import re

_URL_PASSWORD = re.compile(r"(?P<scheme>[a-zA-Z0-9+.-]+://)(?P<user>[^:/@]*):(?P<pw>[^@/]*)@")


def redact_url(url: str) -> str:
    """Hide the password in a database URL so it can go into logs and errors."""
    return _URL_PASSWORD.sub(lambda m: f"{m['scheme']}{m['user']}:***@", url)


class SpandaError(Exception):
    """Base class: a problem with input or configuration, not a bug."""


class ConfigError(SpandaError):
    """The sources YAML or an environment variable is wrong."""


class SourceUnreachableError(SpandaError):
    """The operational database cannot be reached or refused the login."""


class SourceTableError(SpandaError):
    """A configured source table is missing or lacks a configured column."""


class SchemaIncompatibleError(SpandaError):
    """The source's schema changed in a way the bronze table cannot absorb safely."""


class ConcurrentExtractError(SpandaError):
    """Another writer committed to the bronze table while this extract ran."""


class MissingSecretError(SpandaError):
    """A required secret is not set in the environment."""
