"""The collection page's connectors: add a folder connector, see each one's state, sync, dry run, pause, remove.

Only the collection's managers see or touch them; every action goes through
``assistant.connectors.services`` (the same path as ``manage.py connector``).
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
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
from assistant.portal.cloud_connectors import FORMS, cloud_connector_settings
from ingest.models import Collection


def _lines(text: str) -> list[str]:
    return [line.strip() for line in (text or "").splitlines() if line.strip()]


class FolderConnectorForm(forms.Form):
    name = forms.CharField(label=gettext_lazy("Name"), max_length=200)
    path = forms.CharField(label=gettext_lazy("Folder (an absolute path on the server)"), max_length=1000)
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
    every = forms.IntegerField(label=gettext_lazy("Sync every (minutes; 0: only when asked)"), min_value=0, initial=60)


def _managed(request: HttpRequest, collection_id: int) -> Collection:
    collection = collections_with_role(user=request.user, role=Role.MANAGE).filter(pk=collection_id).first()
    if collection is None:
        raise Http404
    return collection


def connectors_context(collection: Collection) -> dict[str, Any]:
    connectors = list(selectors.connectors_of(collection=collection))
    return {
        "connectors": [
            {"connector": c, "failed_items": selectors.failed_items(connector=c, limit=5)} for c in connectors
        ],
        "connector_form": FolderConnectorForm(),
        "cloud_connector_forms": [(kind, form()) for kind, form in FORMS.items()],
    }


@login_required
@require_POST
def connector_add(request: HttpRequest, collection_id: int) -> HttpResponse:
    collection = _managed(request, collection_id)
    if request.POST.get("kind") in FORMS:
        return _cloud_connector_add(request, collection, request.POST["kind"])
    form = FolderConnectorForm(request.POST)
    if not form.is_valid():
        messages.error(request, _("The connector needs a name, a folder and a schedule."))
        return redirect("portal:collection", collection_id=collection.pk)
    data = form.cleaned_data
    try:
        settings = {
            "path": data["path"], "include": _lines(data["include"]), "exclude": _lines(data["exclude"]),
            "groups": mapping_parse(_lines(data["groups"])),
        }  # fmt: skip
        connector = services.connector_add(
            collection=collection, kind="folder", name=data["name"], settings=settings,
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
def connector_action(request: HttpRequest, collection_id: int, connector_id: int) -> HttpResponse:
    collection = _managed(request, collection_id)
    connector = Connector.objects.filter(pk=connector_id, collection=collection).select_related("collection").first()
    if connector is None:
        raise Http404
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
