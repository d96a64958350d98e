"""The collection page's connectors: add one (folder, web site, WebDAV), follow its state, sync, dry run, remove.

Only the collection's managers see or touch them; every action goes through
``assistant.connectors.services`` (the same path as ``manage.py connector``).
Changing one is ``portal.connector_edit``, built on the forms here.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_POST

from assistant.accounts.models import Role
from assistant.accounts.selectors import collections_with_role
from assistant.connectors import selectors, services, sync
from assistant.connectors.models import Connector
from assistant.connectors.secrets import CredentialsUnavailable
from assistant.connectors.sources.folder import mapping_parse
from assistant.portal import server_connectors
from assistant.portal.cloud_connectors import FORMS, cloud_connector_settings
from assistant.portal.connector_fields import GlobFields, form_lines
from ingest.models import Collection


class FolderConnectorForm(GlobFields):
    name = forms.CharField(label=gettext_lazy("Name"), max_length=200)
    path = forms.CharField(label=gettext_lazy("Folder (an absolute path on the server)"), max_length=1000)
    every = forms.IntegerField(label=gettext_lazy("Sync every (minutes; 0: only when asked)"), min_value=0, initial=60)
    field_order = ["name", "path", "include", "exclude", "groups", "every"]


class HttpConnectorForm(forms.Form):
    """A web site or a WebDAV folder; the password or token is sealed and never shown back."""

    name = forms.CharField(label=gettext_lazy("Name"), max_length=200)
    kind = forms.ChoiceField(
        label=gettext_lazy("Type"),
        choices=[("web", gettext_lazy("Web site (intranet)")), ("webdav", gettext_lazy("WebDAV folder"))],
    )
    urls = forms.CharField(
        label=gettext_lazy("URL (web: start pages, one per line; WebDAV: the folder)"), required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
    )  # fmt: skip
    sitemap = forms.URLField(label=gettext_lazy("Sitemap (web, optional)"), required=False, max_length=2000)
    depth = forms.IntegerField(label=gettext_lazy("Link hops followed (web)"), min_value=0, max_value=20, initial=2)
    max_pages = forms.IntegerField(label=gettext_lazy("Pages at most (web)"), min_value=1, initial=1000)
    username = forms.CharField(label=gettext_lazy("User name (optional)"), max_length=200, required=False)
    secret = forms.CharField(
        label=gettext_lazy("Password or token (optional; stored encrypted)"), required=False,
        widget=forms.PasswordInput(render_value=False),
    )  # fmt: skip
    include = forms.CharField(
        label=gettext_lazy("Include (one glob per line on the path; empty: everything)"), required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
    )  # fmt: skip
    exclude = forms.CharField(
        label=gettext_lazy("Exclude (one glob per line)"), required=False, widget=forms.Textarea(attrs={"rows": 2})
    )
    groups = forms.CharField(
        label=gettext_lazy("Who reads what (GLOB=GROUP,GROUP or GLOB=* per line; others: managers only)"),
        required=False, widget=forms.Textarea(attrs={"rows": 3}),
    )  # fmt: skip
    every = forms.IntegerField(label=gettext_lazy("Sync every (minutes; 0: only when asked)"), min_value=0, initial=60)


def managed_collection(request: HttpRequest, collection_id: int) -> Collection:
    """The collection, if the user manages it; 404 otherwise (a reader learns nothing of its connectors)."""
    collection = collections_with_role(user=request.user, role=Role.MANAGE).filter(pk=collection_id).first()
    if collection is None:
        raise Http404
    return collection


def managed_connector(collection: Collection, connector_id: int) -> Connector:
    """One of the managed collection's connectors; 404 for another collection's."""
    connector = Connector.objects.filter(pk=connector_id, collection=collection).select_related("collection").first()
    if connector is None:
        raise Http404
    return connector


def folder_settings(data: dict[str, Any]) -> dict[str, Any]:
    """The folder form's data as the connector's settings (``ValueError`` for a bad mapping line)."""
    return {
        "path": data["path"], "include": form_lines(data["include"]), "exclude": form_lines(data["exclude"]),
        "groups": mapping_parse(form_lines(data["groups"])),
    }  # fmt: skip


def http_settings(data: dict[str, Any]) -> dict[str, Any]:
    """The web/WebDAV form's data as settings; the web-only fields only when the form has them (edit: WebDAV)."""
    urls = form_lines(data["urls"])
    settings = {
        "start_urls": urls, "url": urls[0] if urls else "", "username": data["username"],
        "include": form_lines(data["include"]), "exclude": form_lines(data["exclude"]),
        "groups": mapping_parse(form_lines(data["groups"])),
    }  # fmt: skip
    settings.update({key: data[key] for key in ("sitemap", "depth", "max_pages") if key in data})
    return settings


def connectors_context(collection: Collection) -> dict[str, Any]:
    connectors = list(selectors.connectors_of(collection=collection))
    return {
        "connectors": [
            {"connector": c, "failed_items": selectors.failed_items(connector=c, limit=5)} for c in connectors
        ],
        "connector_form": FolderConnectorForm(),
        "http_connector_form": HttpConnectorForm(),
        "server_connector_forms": server_connectors.server_forms(),
        "cloud_connector_forms": [(kind, form()) for kind, form in FORMS.items()],
    }


@login_required
@require_POST
def connector_add(request: HttpRequest, collection_id: int) -> HttpResponse:
    collection = managed_collection(request, collection_id)
    kind = request.POST.get("kind", "folder")
    if kind in server_connectors.FORMS:
        return server_connectors.server_connector_add(request, collection, kind)
    if kind in FORMS:
        return _cloud_connector_add(request, collection, kind)
    form = FolderConnectorForm(request.POST)
    if not form.is_valid():
        messages.error(request, _("The connector needs a name, a folder and a schedule."))
        return redirect("portal:collection", collection_id=collection.pk)
    data = form.cleaned_data
    try:
        connector = services.connector_add(
            collection=collection, kind="folder", name=data["name"], settings=folder_settings(data),
            every_minutes=data["every"], actor=request.user,
        )  # fmt: skip
    except (ValueError, CredentialsUnavailable) as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, _("Added the connector “%(name)s”.") % {"name": connector.name})
    return redirect("portal:collection", collection_id=collection.pk)


def _cloud_connector_add(request: HttpRequest, collection: Collection, kind: str) -> HttpResponse:
    form = FORMS[kind](request.POST)
    if not form.is_valid():
        problems = "; ".join(
            f"{form.fields[f].label}: {' '.join(str(m) for m in e)}" for f, e in form.errors.items() if f in form.fields
        )
        messages.error(request, _("The connector cannot be added: %(problems)s") % {"problems": problems})
        return redirect("portal:collection", collection_id=collection.pk)
    data = form.cleaned_data
    try:
        settings, credentials = cloud_connector_settings(kind, data)
        connector = services.connector_add(
            collection=collection, kind=kind, name=data["name"], settings=settings, credentials=credentials,
            every_minutes=data["every"], actor=request.user,
        )  # fmt: skip
    except (ValueError, CredentialsUnavailable) as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, _("Added the connector “%(name)s”.") % {"name": connector.name})
    return redirect("portal:collection", collection_id=collection.pk)


@login_required
@require_POST
def connector_add_http(request: HttpRequest, collection_id: int) -> HttpResponse:
    """Add a web or WebDAV connector (the same service as ``manage.py connector add --type web|webdav``)."""
    collection = managed_collection(request, collection_id)
    form = HttpConnectorForm(request.POST)
    if not form.is_valid():
        messages.error(request, _("The connector needs a name, a type, a URL and a schedule."))
        return redirect("portal:collection", collection_id=collection.pk)
    data = form.cleaned_data
    try:
        connector = services.connector_add(
            collection=collection, kind=data["kind"], name=data["name"], settings=http_settings(data),
            credentials={"secret": data["secret"]} if data["secret"] else None, every_minutes=data["every"],
            actor=request.user,
        )  # fmt: skip
    except (ValueError, CredentialsUnavailable) as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, _("Added the connector “%(name)s”.") % {"name": connector.name})
    return redirect("portal:collection", collection_id=collection.pk)


@login_required
def connectors_progress(request: HttpRequest, collection_id: int) -> JsonResponse:
    """Each connector's state and counts, for the page to follow a running sync (managers only)."""
    collection = managed_collection(request, collection_id)
    return JsonResponse({"connectors": selectors.connectors_progress(collection=collection)})


@login_required
@require_POST
def connector_action(request: HttpRequest, collection_id: int, connector_id: int) -> HttpResponse:
    collection = managed_collection(request, collection_id)
    connector = managed_connector(collection, connector_id)
    action = request.POST.get("action", "")
    name = {"name": connector.name}
    try:
        if action == "sync":
            if services.connector_sync_request(connector=connector, actor=request.user):
                messages.success(request, _("A sync of “%(name)s” is queued.") % name)
            else:
                messages.info(request, _("A sync of “%(name)s” is already queued or running.") % name)
        elif action == "dry_run":
            report = sync.connector_sync(connector=connector, dry_run=True)
            changes = [i for i in report.items if i.action != "unchanged"]
            return render(
                request,
                "portal/connector_dry_run.html",
                {"collection": collection, "connector": connector, "report": report, "changes": changes},
            )
        elif action in ("pause", "resume"):
            services.connector_change(connector=connector, paused=action == "pause", actor=request.user)
            text = _("Paused “%(name)s”.") if action == "pause" else _("Resumed “%(name)s”.")
            messages.success(request, text % name)
        elif action == "remove":
            delete = request.POST.get("delete_documents") == "on"
            services.connector_remove(connector=connector, delete_documents=delete, actor=request.user)
            messages.success(request, _("Removed the connector “%(name)s”.") % name)
        else:
            messages.error(request, _("Unknown action."))
    except (sync.SyncRefused, CredentialsUnavailable) as exc:
        messages.error(request, str(exc))
    return redirect("portal:collection", collection_id=collection.pk)
