"""Citation markers in a finished answer: keep the ones that name a source, drop the rest.

A small model sometimes cites ``[7]`` when it was given five sources, or writes
``[1, 2]``. The stored answer keeps only markers naming a source it was given, each
as ``[n]`` (so every surface links them the same way), and counts what it removed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# One to three digits: a bracketed year such as [2023] is text, not a citation.
_MARKER = re.compile(r"(\s*)\[(\d{1,3}(?:\s*,\s*\d{1,3})*)\]")


@dataclass(frozen=True)
class CleanedAnswer:
    text: str
    cited: frozenset[int]  # source numbers the answer cites
    removed: int  # markers naming no source, removed


def citations_clean(text: str, *, sources: int) -> CleanedAnswer:
    """``text`` with markers outside ``1..sources`` removed, and which sources it cites."""
    cited: set[int] = set()
    removed = 0

    def replace(match: re.Match[str]) -> str:
        nonlocal removed
        numbers = [int(n) for n in re.split(r"\s*,\s*", match.group(2))]
        valid = list(dict.fromkeys(n for n in numbers if 1 <= n <= sources))
        removed += len(numbers) - len([n for n in numbers if 1 <= n <= sources])
        cited.update(valid)
        if not valid:
            return ""  # with the space before it: "text [9]." becomes "text."
        return match.group(1) + "".join(f"[{n}]" for n in valid)

    return CleanedAnswer(text=_MARKER.sub(replace, text), cited=frozenset(cited), removed=removed)
