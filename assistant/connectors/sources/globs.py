"""Path globs as people write them for file shares: ``*.pdf``, ``hr/**``, ``**/drafts/*``.

``*`` and ``?`` stay inside one folder name, ``**`` crosses folders (``a/**/b``
also matches ``a/b``). A pattern without a slash matches the file name in any
folder (as in ``.gitignore``), so ``*.pdf`` means every PDF.
"""

from __future__ import annotations

import re
from functools import lru_cache


@lru_cache(maxsize=256)
def _compiled(pattern: str) -> re.Pattern[str]:
    pattern = pattern.strip().lstrip("/")
    if "/" not in pattern:
        pattern = "**/" + pattern
    out: list[str] = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out) + r"\Z")


def glob_matches(pattern: str, path: str) -> bool:
    """Whether the relative POSIX ``path`` matches ``pattern``; a folder pattern ``hr/`` matches what is inside."""
    if pattern.endswith("/"):
        pattern += "**"
    return _compiled(pattern).match(path) is not None


def first_match(patterns: list[str], path: str) -> str | None:
    return next((p for p in patterns if glob_matches(p, path)), None)
