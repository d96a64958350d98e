"""The portal's forms for connectors that log in to a server: a mailbox (IMAP) and an SMB share.

The folder connector's form stays in ``portal.connectors``; these add the server, the
account and its password (sealed by ``connectors.services`` like every credential,
never shown back: the field is empty on every page).
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from assistant.connectors import services
from assistant.connectors.secrets import CredentialsUnavailable
from assistant.connectors.sources.folder import mapping_parse
from assistant.portal.connector_fields import GlobFields, form_lines
from ingest.models import Collection


class _ServerForm(forms.Form):
    kind = ""
    title: Any = ""
    name = forms.CharField(label=gettext_lazy("Name"), max_length=200)
    host = forms.CharField(label=gettext_lazy("Server (name or address)"), max_length=255)
    port = forms.IntegerField(label=gettext_lazy("Port (empty: the usual one)"), min_value=1, max_value=65535,
                              required=False)  # fmt: skip
    user = forms.CharField(label=gettext_lazy("Account"), max_length=255)
    password = forms.CharField(label=gettext_lazy("Password (stored encrypted, never shown again)"),
                               widget=forms.PasswordInput(render_value=False))  # fmt: skip

    def settings(self) -> dict[str, Any]:
        data = self.cleaned_data
        return {"host": data["host"], "port": data["port"], "user": data["user"]}


class ImapConnectorForm(_ServerForm):
    kind = "imap"
    title = gettext_lazy("Add a mailbox (IMAP) connector")
    security = forms.ChoiceField(
        label=gettext_lazy("Encryption"),
        choices=[("imaps", gettext_lazy("IMAPS (TLS, port 993)")), ("starttls", gettext_lazy("STARTTLS (port 143)"))],
    )
    folders = forms.CharField(
        label=gettext_lazy("Folders (one per line; empty: INBOX)"), required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
    )  # fmt: skip
    groups = forms.CharField(
        label=gettext_lazy("Who reads which folder (FOLDER-GLOB=GROUP,GROUP or **=GROUP for the mailbox's owner)"),
        required=False, widget=forms.Textarea(attrs={"rows": 2}),
    )  # fmt: skip
    field_order = ["name", "host", "port", "security", "user", "password", "folders", "groups"]

    def settings(self) -> dict[str, Any]:
        data = self.cleaned_data
        return {
            **super().settings(), "security": data["security"], "folders": form_lines(data["folders"]),
            "groups": mapping_parse(form_lines(data["groups"])),
        }  # fmt: skip


class SmbConnectorForm(_ServerForm, GlobFields):
    kind = "smb"
    title = gettext_lazy("Add an SMB share connector (no mount needed)")
    share = forms.CharField(label=gettext_lazy("Share"), max_length=255)
    path = forms.CharField(label=gettext_lazy("Folder inside the share (empty: all of it)"), required=False,
                           max_length=1000)  # fmt: skip
    permissions = forms.ChoiceField(
        label=gettext_lazy("Who reads a file"), required=False,
        choices=[("map", gettext_lazy("The mapping below (folder globs)")),
                 ("acl", gettext_lazy("The file's own ACL on the share (SIDs mapped below)"))],
    )  # fmt: skip
    acl_groups = forms.CharField(
        label=gettext_lazy("With ACLs: the group a SID stands for (SID=GROUP,GROUP, one per line)"),
        required=False, widget=forms.Textarea(attrs={"rows": 2}),
    )  # fmt: skip
    field_order = [
        "name", "host", "port", "share", "path", "user", "password", "include", "exclude", "permissions", "groups",
        "acl_groups",
    ]  # fmt: skip

    def settings(self) -> dict[str, Any]:
        data = self.cleaned_data
        return {
            **super().settings(), "share": data["share"], "path": data["path"], "include": form_lines(data["include"]),
            "exclude": form_lines(data["exclude"]), "groups": mapping_parse(form_lines(data["groups"])),
            "permissions": data["permissions"] or "map", "acl_groups": mapping_parse(form_lines(data["acl_groups"])),
        }  # fmt: skip


FORMS: dict[str, type[_ServerForm]] = {"imap": ImapConnectorForm, "smb": SmbConnectorForm}
EVERY = forms.IntegerField(label=gettext_lazy("Sync every (minutes; 0: only when asked)"), min_value=0, initial=60)
for _form in FORMS.values():
    _form.base_fields["every"] = EVERY


def server_forms() -> list[_ServerForm]:
    return [form() for form in FORMS.values()]


def server_connector_add(request: HttpRequest, collection: Collection, kind: str) -> HttpResponse:
    """Add an IMAP or SMB connector from the portal (through ``connectors.services`` like every surface)."""
    form = FORMS[kind](request.POST)
    if not form.is_valid():
        messages.error(request, _("The connector needs a name, a server, an account, its password and a schedule."))
        return redirect("portal:collection", collection_id=collection.pk)
    try:
        connector = services.connector_add(
            collection=collection, kind=kind, name=form.cleaned_data["name"], settings=form.settings(),
            credentials={"secret": form.cleaned_data["password"]}, every_minutes=form.cleaned_data["every"],
            actor=request.user,
        )  # fmt: skip
    except (ValueError, CredentialsUnavailable) as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, _("Added the connector “%(name)s”.") % {"name": connector.name})
    return redirect("portal:collection", collection_id=collection.pk)
