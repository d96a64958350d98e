"""What the portal's connector forms share: lines of a text box, and the glob fields.

The folder and SMB forms both read paths: which to include, which to exclude, and
which groups may read what (``GLOB=GROUP,GROUP`` per line).
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.utils.translation import gettext_lazy


def form_lines(text: str) -> list[str]:
    """The non-empty lines of a text box, stripped."""
    return [line.strip() for line in (text or "").splitlines() if line.strip()]


def mapping_lines(value: Any) -> str:
    """A stored group mapping back as the text box's ``NAME=GROUP,GROUP`` lines (what ``mapping_parse`` reads).

    Glob mappings are a list of ``{"glob", "groups"}`` in their order; a source's own
    groups (Confluence, SharePoint, SMB SIDs) an object ``{name: [groups]}``.
    """
    if isinstance(value, dict):
        pairs = list(value.items())
    else:
        pairs = [(entry["glob"], entry["groups"]) for entry in value or []]
    return "\n".join(f"{name}={','.join(groups)}" for name, groups in pairs)


class GlobFields(forms.Form):
    """Include, exclude and the glob-to-group mapping (a form lists them in its ``field_order``)."""

    include = forms.CharField(
        label=gettext_lazy("Include (one glob per line; empty: everything)"), required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
    )  # fmt: skip
    exclude = forms.CharField(
        label=gettext_lazy("Exclude (one glob per line)"), required=False, widget=forms.Textarea(attrs={"rows": 2})
    )
    groups = forms.CharField(
        label=gettext_lazy("Who reads what (GLOB=GROUP,GROUP or GLOB=* per line; other files: managers only)"),
        required=False, widget=forms.Textarea(attrs={"rows": 3}),
    )  # fmt: skip
