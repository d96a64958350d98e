"""Change a connector from the portal: the form that added it, pre-filled, less its name and type.

Each type's edit form is its add form (``connectors``, ``server_connectors``,
``cloud_connectors``) without the fields that never change, so a field keeps one
definition and one label. The form's data become settings by the add form's own
translation, and the view hands them to ``connectors.services.connector_change``, the
path of ``manage.py connector edit`` (which checks the manager and writes the audit
record). The secret field is always empty: left empty, the stored secret stays; filled,
it replaces it.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods

from assistant.connectors import services
from assistant.connectors.models import Connector
from assistant.connectors.secrets import CredentialsUnavailable
from assistant.portal.cloud_connectors import ConfluenceConnectorForm, SharePointConnectorForm, cloud_connector_settings
from assistant.portal.connector_fields import mapping_lines
from assistant.portal.connectors import (
    FolderConnectorForm,
    HttpConnectorForm,
    folder_settings,
    http_settings,
    managed_collection,
    managed_connector,
)
from assistant.portal.server_connectors import ImapConnectorForm, SmbConnectorForm

# Fixed once added: the name is how the shell and the audit log know a connector; a
# different type is a different connector.
FIXED = ("name", "kind")


def _lines(values: Any) -> str:
    return "\n".join(values or [])


def _globs(settings: dict[str, Any]) -> dict[str, Any]:
    return {
        "include": _lines(settings.get("include")), "exclude": _lines(settings.get("exclude")),
        "groups": mapping_lines(settings.get("groups")),
    }  # fmt: skip


def _port(settings: dict[str, Any], usual: int) -> Any:
    # The usual port shows as empty ("the usual one"), so a change of encryption takes the new one's.
    port = settings.get("port")
    return None if port == usual else port


def _web(s: dict[str, Any]) -> dict[str, Any]:
    return {
        "urls": _lines(s.get("start_urls")), "sitemap": s.get("sitemap", ""), "depth": s.get("depth"),
        "max_pages": s.get("max_pages"), "username": s.get("username", ""), **_globs(s),
    }  # fmt: skip


def _imap(s: dict[str, Any]) -> dict[str, Any]:
    usual = 993 if s.get("security") == "imaps" else 143
    return {
        "host": s.get("host", ""), "port": _port(s, usual), "security": s.get("security"), "user": s.get("user", ""),
        "folders": _lines(s.get("folders")), "groups": mapping_lines(s.get("groups")),
    }  # fmt: skip


def _smb(s: dict[str, Any]) -> dict[str, Any]:
    return {
        "host": s.get("host", ""), "port": _port(s, 445), "share": s.get("share", ""), "path": s.get("path", ""),
        "user": s.get("user", ""), "permissions": s.get("permissions", "map"),
        "acl_groups": mapping_lines(s.get("acl_groups")), **_globs(s),
    }  # fmt: skip


def _confluence(s: dict[str, Any]) -> dict[str, Any]:
    return {
        "url": s.get("base_url", ""), "deployment": s.get("deployment"), "spaces": ", ".join(s.get("spaces") or []),
        "email": s.get("email", ""), "groups": mapping_lines(s.get("groups")),
    }  # fmt: skip


def _sharepoint(s: dict[str, Any]) -> dict[str, Any]:
    return {
        "tenant": s.get("tenant", ""), "drive": s.get("drive_id", ""), "site": s.get("site_id", ""),
        "client_id": s.get("client_id", ""), "groups": mapping_lines(s.get("groups")),
    }  # fmt: skip


def _cloud_settings(kind: str) -> Callable[[Any], dict[str, Any]]:
    return lambda form: cloud_connector_settings(kind, form.cleaned_data)[0]


@dataclass(frozen=True)
class _Edit:
    """One type's edit: its add form, its settings as the form's initial values, and back."""

    add_form: type[forms.Form]
    initial: Callable[[dict[str, Any]], dict[str, Any]]
    settings: Callable[[Any], dict[str, Any]]  # a valid form -> settings (ValueError: a bad mapping line)
    sealed: str = ""  # the field whose value is sealed as the secret; "": the type has none
    leave_out: tuple[str, ...] = ()  # fields of the add form that do not apply to this type


EDITS: dict[str, _Edit] = {
    "folder": _Edit(FolderConnectorForm, lambda s: {"path": s.get("path", ""), **_globs(s)},
                    lambda form: folder_settings(form.cleaned_data)),
    "web": _Edit(HttpConnectorForm, _web, lambda form: http_settings(form.cleaned_data), sealed="secret"),
    "webdav": _Edit(HttpConnectorForm, lambda s: {**_web(s), "urls": s.get("url", "")},
                    lambda form: http_settings(form.cleaned_data), sealed="secret",
                    leave_out=("sitemap", "depth", "max_pages")),
    "imap": _Edit(ImapConnectorForm, _imap, lambda form: form.settings(), sealed="password"),
    "smb": _Edit(SmbConnectorForm, _smb, lambda form: form.settings(), sealed="password"),
    "confluence": _Edit(ConfluenceConnectorForm, _confluence, _cloud_settings("confluence"), sealed="secret"),
    "sharepoint": _Edit(SharePointConnectorForm, _sharepoint, _cloud_settings("sharepoint"), sealed="secret"),
}  # fmt: skip


def _form_class(edit: _Edit) -> type[forms.Form]:
    # A subclass keeps the add form's methods (``settings()``) and field order; its fields
    # are copies, so making the secret optional here leaves the add form's required.
    fields = {
        name: copy.deepcopy(field)
        for name, field in edit.add_form.base_fields.items()
        if name not in FIXED + edit.leave_out
    }
    if edit.sealed:
        fields[edit.sealed].required = False
    form_class = cast(type[forms.Form], type(f"Edit{edit.add_form.__name__}", (edit.add_form,), {}))
    form_class.base_fields = fields
    return form_class


FORMS: dict[str, type[forms.Form]] = {kind: _form_class(edit) for kind, edit in EDITS.items()}


def edit_initial(connector: Connector) -> dict[str, Any]:
    """The edit form's values for the connector as stored: its settings and schedule, never its secret."""
    return {**EDITS[connector.kind].initial(connector.settings), "every": connector.every_minutes}


def edit_form(connector: Connector, data: Any = None) -> forms.Form:
    """The connector's edit form, bound to ``data`` or pre-filled from its settings."""
    form = FORMS[connector.kind](data, initial=edit_initial(connector))
    security, current = form.fields.get("security"), connector.settings.get("security")
    if isinstance(security, forms.ChoiceField) and current and not security.valid_value(current):
        # A mailbox set up at the shell (plain, loopback only) keeps its choice instead of
        # silently switching to the first one the portal offers.
        security.choices = [*cast(list[tuple[str, Any]], security.choices), (current, current)]
    return form


def edit_values(connector: Connector, form: forms.Form) -> tuple[dict[str, Any], dict[str, str] | None]:
    """A valid form's settings, and the new secret (``None``: keep the stored one); ``ValueError`` names a bad line."""
    edit = EDITS[connector.kind]
    secret = str(form.cleaned_data.get(edit.sealed) or "") if edit.sealed else ""
    return edit.settings(form), ({"secret": secret} if secret else None)


@login_required
@require_http_methods(["GET", "POST"])
def connector_edit(request: HttpRequest, collection_id: int, connector_id: int) -> HttpResponse:
    """Change a connector's settings, schedule or secret (managers only; the service of ``connector edit``)."""
    collection = managed_collection(request, collection_id)
    connector = managed_connector(collection, connector_id)
    if connector.kind not in FORMS:
        raise Http404
    form = edit_form(connector, request.POST if request.method == "POST" else None)
    if form.is_bound and form.is_valid():
        try:
            settings, credentials = edit_values(connector, form)
            services.connector_change(
                connector=connector, settings=settings, credentials=credentials,
                every_minutes=form.cleaned_data["every"], actor=request.user,
            )  # fmt: skip
        except (ValueError, CredentialsUnavailable) as exc:
            form.add_error(None, _("Nothing was changed: %(problem)s") % {"problem": exc})
            connector.refresh_from_db()
        else:
            messages.success(request, _("Changed the connector “%(name)s”; the next sync applies it.") % {
                "name": connector.name
            })  # fmt: skip
            return redirect(reverse("portal:collection", args=[collection.pk]) + "#connectors")
    return render(request, "portal/connector_edit.html", {
        "collection": collection, "connector": connector, "form": form,
        "secret_field": EDITS[connector.kind].sealed, "has_secret": bool(bytes(connector.credentials or b"")),
    })  # fmt: skip
