"""A source's own groups (a Confluence group, an Entra ID group) mapped onto product groups.

The setting ``groups`` is an object ``{"source group": ["product group", ...]}``;
``"*"`` as a product group means every reader of the collection. Names match without
regard to case, and a source group may be named by its id too (Confluence Cloud and
Microsoft Graph identify groups by id). A source group the mapping does not name
grants nothing: documents stay least permissive until the mapping says otherwise.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from assistant.connectors.sources import EVERYONE


def groupmap_clean(value: Any) -> dict[str, list[str]]:
    """The mapping as stored, from an object or from ``--map NAME=GROUP[,GROUP]`` entries.

    ``connector add --map`` hands over ``[{"glob": NAME, "groups": [...]}]`` (the
    folder connector's shape); the name is taken as the source group's name.
    """
    if value in (None, ""):
        return {}
    if isinstance(value, list):
        pairs = []
        for entry in value:
            if not isinstance(entry, dict):
                raise ValueError("Each group mapping entry needs a source group and product groups.")
            pairs.append((entry.get("source", entry.get("glob")), entry.get("groups")))
    elif isinstance(value, dict):
        pairs = list(value.items())
    else:
        raise ValueError('\'groups\' must map source groups to product groups: {"confluence-users": ["*"]}.')
    cleaned: dict[str, list[str]] = {}
    for name, groups in pairs:
        if not isinstance(name, str) or not name.strip():
            raise ValueError("A group mapping entry needs the source group's name.")
        if isinstance(groups, str):
            groups = groups.split(",")
        if not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
            raise ValueError(f"The product groups for '{name}' must be a list of group names (or \"*\").")
        found = sorted({g.strip() for g in groups if g.strip()})
        if not found:
            raise ValueError(f"The source group '{name}' is mapped to no product group.")
        cleaned[name.strip()] = found
    return cleaned


def groupmap_apply(mapping: dict[str, list[str]], source_groups: Iterable[str]) -> set[str]:
    """The product groups the named source groups map to (``{"*"}`` alone when one means everyone)."""
    folded = {name.casefold(): groups for name, groups in mapping.items()}
    found: set[str] = set()
    for name in source_groups:
        found.update(folded.get(name.casefold(), []))
    return {EVERYONE} if EVERYONE in found else found
