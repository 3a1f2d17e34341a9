"""Lakehouse names: one spelling that every engine reads the same."""

from __future__ import annotations

import re


def snake_case(name: str) -> str:
    """`ForumPosts` -> `forum_posts`, `StudentID` -> `student_id`, `LastLoginIP` -> `last_login_ip`.

    Lakehouse engines (Trino, Dremio, Spark) fold or quote mixed-case names
    differently; snake_case reads the same in all of them.
    """
    s = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", name)
    s = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", s)
    s = re.sub(r"[^0-9a-zA-Z]+", "_", s)
    return s.strip("_").lower()
