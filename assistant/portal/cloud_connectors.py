"""The add forms of the connectors that read a web API (Confluence, SharePoint) on the collection page.

Each form turns into the settings and credentials ``connectors.services.connector_add``
takes (the same path as ``manage.py connector add --type confluence|sharepoint``).
The secret is asked for in a password field and is never shown back.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.utils.translation import gettext_lazy

from assistant.connectors.sources.folder import mapping_parse

MAPPING_HELP = gettext_lazy(
    "Who reads what (SOURCE GROUP=GROUP,GROUP or SOURCE GROUP=* per line; others: managers only)"
)


class ConfluenceConnectorForm(forms.Form):
    kind = forms.CharField(widget=forms.HiddenInput, initial="confluence")
    name = forms.CharField(label=gettext_lazy("Name"), max_length=200)
    url = forms.URLField(label=gettext_lazy("Site address (Cloud: https://SITE.atlassian.net/wiki)"), max_length=500)
    deployment = forms.ChoiceField(
        label=gettext_lazy("Deployment"),
        choices=[("cloud", gettext_lazy("Cloud")), ("datacenter", gettext_lazy("Data Center"))],
    )
    spaces = forms.CharField(label=gettext_lazy("Space keys (separated by commas)"), max_length=1000)
    email = forms.EmailField(label=gettext_lazy("Account email (Cloud only)"), required=False)
    secret = forms.CharField(
        label=gettext_lazy("API token (Cloud) or personal access token (Data Center)"),
        widget=forms.PasswordInput(render_value=False),
    )
    groups = forms.CharField(label=MAPPING_HELP, required=False, widget=forms.Textarea(attrs={"rows": 3}))
    every = forms.IntegerField(label=gettext_lazy("Sync every (minutes; 0: only when asked)"), min_value=0, initial=60)


class SharePointConnectorForm(forms.Form):
    kind = forms.CharField(widget=forms.HiddenInput, initial="sharepoint")
    name = forms.CharField(label=gettext_lazy("Name"), max_length=200)
    tenant = forms.CharField(label=gettext_lazy("Tenant (directory id or domain)"), max_length=200)
    drive = forms.CharField(label=gettext_lazy("Drive id of the document library"), max_length=300)
    site = forms.CharField(label=gettext_lazy("Site id (optional)"), max_length=300, required=False)
    client_id = forms.CharField(label=gettext_lazy("App (client) id"), max_length=200)
    secret = forms.CharField(label=gettext_lazy("Client secret"), widget=forms.PasswordInput(render_value=False))
    groups = forms.CharField(label=MAPPING_HELP, required=False, widget=forms.Textarea(attrs={"rows": 3}))
    every = forms.IntegerField(label=gettext_lazy("Sync every (minutes; 0: only when asked)"), min_value=0, initial=60)


FORMS: dict[str, type[forms.Form]] = {"confluence": ConfluenceConnectorForm, "sharepoint": SharePointConnectorForm}


def _mapping(text: str) -> list[dict[str, Any]]:
    return mapping_parse([line.strip() for line in (text or "").splitlines() if line.strip()])


def cloud_connector_settings(kind: str, data: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """The settings and credentials of a valid form's data (``ValueError`` for a bad mapping line)."""
    if kind == "confluence":
        settings = {
            "base_url": data["url"], "deployment": data["deployment"], "spaces": data["spaces"],
            "email": data["email"], "groups": _mapping(data["groups"]),
        }  # fmt: skip
    else:
        settings = {
            "tenant": data["tenant"], "drive_id": data["drive"], "site_id": data["site"],
            "client_id": data["client_id"], "groups": _mapping(data["groups"]),
        }  # fmt: skip
    return settings, {"secret": data["secret"]}
