"""The portal's documents: upload, the live documents table, bulk actions and a document's own page.

Views only: every list, count and row comes from the documents the user may see
(``accounts.selectors.documents_visible_to``), a single document from
``document_for`` (hidden and missing answer alike: not found), and every change
goes through the ingest services (``documents_upload_many``, ``ingest.bulk``).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import Group
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse, QueryDict
from django.shortcuts import redirect, render
from django.template.defaultfilters import filesizeformat
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from django.views.decorators.http import require_POST

from assistant.accounts.models import Role
from assistant.accounts.selectors import document_for, documents_visible_to, user_can
from assistant.chat.services import document_passages
from assistant.portal import views as portal_views
from ingest import bulk, selectors, services
from ingest.models import Collection, Document

PASSAGES_PER_PAGE = 50


def _wants_json(request: HttpRequest) -> bool:
    return "application/json" in request.headers.get("Accept", "")


def _int(value: str | None, default: int = 0) -> int:
    try:
        return int(value or default)
    except ValueError:
        return default


def document_row(document: Document) -> dict[str, Any]:
    """A row of the documents table: the same keys for the page and its live JSON."""
    created = timezone.localtime(document.created_at)
    return {
        **selectors.document_as_dict(document),
        "uploader": document.uploaded_by.get_username() if document.uploaded_by else "",
        "status_label": str(document.get_status_display()),
        "size_label": filesizeformat(document.size),
        "created_label": created.strftime("%Y-%m-%d %H:%M"),
        "url": reverse("portal:document", args=[document.pk]),
    }


class _Table:
    """What the documents table shows: filters and order from the query string, one page."""

    FILTERS = ("status", "type", "q", "sort")

    def __init__(self, request: HttpRequest, collection: Collection) -> None:
        self.collection = collection
        self.query = request.GET
        visible = documents_visible_to(user=request.user, collection=collection)
        self.summary = selectors.collection_summary(collection=collection, documents=visible)
        self.types = selectors.document_types(documents=visible)
        self.page = selectors.documents_page(
            documents=visible,
            status=self.query.get("status", ""),
            file_type=self.query.get("type", ""),
            search=self.query.get("q", "")[:200],
            sort=self.query.get("sort", "-time"),
            page=_int(self.query.get("page"), 1),
        )
        self.rows = [document_row(d) for d in self.page.documents]

    def link(self, **changes: Any) -> str:
        """This table's query string with ``changes`` (a changed filter or order starts at page 1)."""
        params = {key: self.query.get(key, "") for key in self.FILTERS}
        params["page"] = str(self.page.number)
        if "page" not in changes:
            params["page"] = "1"
        params.update({key: str(value) for key, value in changes.items()})
        return "?" + urlencode({k: v for k, v in params.items() if v and not (k == "page" and v == "1")})

    def headers(self) -> list[dict[str, str]]:
        """The sortable columns, each with the link that sorts by it (again: the other way)."""
        found = []
        for key, label in (("name", _("Name")), ("status", _("Status")), ("size", _("Size")), ("time", _("Uploaded"))):
            current = self.page.sort.lstrip("-") == key
            descending = self.page.sort.startswith("-")
            following = key if current and descending else f"-{key}" if current or key == "time" else key
            aria = "none" if not current else "descending" if descending else "ascending"
            found.append({"key": key, "label": label, "url": self.link(sort=following), "aria": aria})
        return found

    def as_context(self) -> dict[str, Any]:
        page = self.page
        return {
            "summary": self.summary,
            "documents": self.rows,
            "page": page,
            "types": self.types,
            "statuses": Document.Status.choices,
            "filters": {key: self.query.get(key, "") for key in self.FILTERS},
            "headers": {h["key"]: h for h in self.headers()},
            "previous_url": self.link(page=page.number - 1) if page.number > 1 else "",
            "next_url": self.link(page=page.number + 1) if page.number < page.pages else "",
            "here": reverse("portal:collection", args=[self.collection.pk]) + self.link(page=page.number),
        }

    def as_json(self) -> dict[str, Any]:
        return {"summary": self.summary, "documents": self.rows, "page": self.page.as_dict()}


def table_context(request: HttpRequest, collection: Collection) -> dict[str, Any]:
    """The documents table of the collection page (``portal/collection.html``)."""
    return _Table(request, collection).as_context()


@login_required
def documents_status(request: HttpRequest, collection_id: int) -> JsonResponse:
    """One page of the documents table, as the live updates poll it (same query string as the page)."""
    collection = portal_views._collection_for(request, collection_id, Role.WRITE)
    return JsonResponse(_Table(request, collection).as_json())


def _outcome(outcome: services.UploadOutcome) -> dict[str, Any]:
    if outcome.result is None:
        return {"name": outcome.name, "outcome": "rejected", "message": outcome.error}
    document = outcome.result.document
    found = {"id": document.pk, "name": document.name, "url": reverse("portal:document", args=[document.pk])}
    if outcome.result.duplicate:
        # Only ever a document this user can see (``ingest.services.document_upload``).
        message = _("Already in this collection as “%(name)s”.") % {"name": document.name}
        return {"name": outcome.name, "outcome": "duplicate", "message": message, "document": found}
    return {"name": outcome.name, "outcome": "accepted", "message": _("Accepted: queued."), "document": found}


@login_required
@require_POST
def upload(request: HttpRequest, collection_id: int) -> HttpResponse:
    """Store the posted files; a page answers with messages, a script (Accept: JSON) with each file's outcome."""
    collection = portal_views._collection_for(request, collection_id, Role.WRITE)
    form = portal_views.UploadForm(request.POST, request.FILES, groups=portal_views._upload_groups(request, collection))
    # ``folder``: the files of a chosen folder (a second input, for a browser without scripts).
    files = request.FILES.getlist("files") + request.FILES.getlist("folder")
    problem = ""
    if not files:
        problem = _("Choose at least one file to upload.")
    elif not form.is_valid() and "restrict_to_groups" in form.errors:
        problem = _("Choose groups from the list to restrict the files to.")
    if problem:
        if _wants_json(request):
            return JsonResponse({"error": problem, "outcomes": []}, status=400)
        messages.error(request, problem)
        return redirect("portal:collection", collection_id=collection.pk)
    outcomes = services.documents_upload_many(
        collection=collection,
        files=[(f.name or "upload", f) for f in files],
        user=request.user,
        restrict_to_groups=list(form.cleaned_data.get("restrict_to_groups") or []),
    )
    answers = [_outcome(o) for o in outcomes]
    if _wants_json(request):
        return JsonResponse({"outcomes": answers})
    for answer in answers:
        if answer["outcome"] == "rejected":
            messages.error(request, f"{answer['name']}: {answer['message']}")
        elif answer["outcome"] == "duplicate":
            found = _("%(file)s: already in this collection as “%(name)s”.")
            messages.info(request, found % {"file": answer["name"], "name": answer["document"]["name"]})
    return redirect("portal:collection", collection_id=collection.pk)


def _back(request: HttpRequest, collection: Collection) -> HttpResponse:
    here = reverse("portal:collection", args=[collection.pk])
    following = request.POST.get("next", "")
    return redirect(following if following.startswith(here + "?") or following == here else here)


def _ids(post: QueryDict) -> list[int]:
    return [value for value in (_int(v) for v in post.getlist("ids")) if value > 0]


@login_required
@require_POST
def documents_action(request: HttpRequest, collection_id: int) -> HttpResponse:
    """Retry one file, re-index the checked rows, or delete them once confirmed.

    Each id is checked on its own by ``ingest.bulk``; a deletion is asked to be
    confirmed first on a page that lists the documents (only those the user sees).
    """
    collection = portal_views._collection_for(request, collection_id, Role.WRITE)
    post = request.POST
    if post.get("retry"):
        action, ids = "reindex", [_int(post["retry"])]
    elif post.get("delete"):
        action, ids = "delete", [_int(post["delete"])]
    else:
        action, ids = post.get("action", ""), _ids(post)
    if not ids or action not in ("delete", "reindex"):
        messages.error(request, _("Check the documents to act on first."))
        return _back(request, collection)
    if action == "reindex":
        outcome = bulk.documents_reprocess_many(user=request.user, collection=collection, document_ids=ids)
        done = len(outcome.done)
        messages.success(
            request, ngettext("%(n)d document queued again.", "%(n)d documents queued again.", done) % {"n": done}
        )
        if outcome.busy:
            messages.info(
                request,
                ngettext(
                    "%(n)d document is being processed now and was left to finish.",
                    "%(n)d documents are being processed now and were left to finish.",
                    outcome.busy,
                )
                % {"n": outcome.busy},
            )
        return _back(request, collection)
    if post.get("confirmed") != "yes":
        visible = documents_visible_to(user=request.user, collection=collection).filter(pk__in=ids[: bulk.BULK_MAX])
        return render(
            request,
            "portal/documents_delete.html",
            {"collection": collection, "documents": visible.order_by("name"), "next": post.get("next", "")},
        )
    outcome = bulk.documents_delete_many(user=request.user, collection=collection, document_ids=ids)
    done = len(outcome.done)
    messages.success(request, ngettext("%(n)d document deleted.", "%(n)d documents deleted.", done) % {"n": done})
    return _back(request, collection)


@login_required
def document_detail(request: HttpRequest, document_id: int) -> HttpResponse:
    """A document's metadata, versions, status history and the passages the assistant sees."""
    try:
        document = document_for(user=request.user, document_id=document_id, role=Role.WRITE)
    except PermissionDenied as exc:
        raise Http404 from exc  # the same for a hidden document as for a missing one
    visible = documents_visible_to(user=request.user, collection=document.collection)
    manages = user_can(user=request.user, collection=document.collection, role=Role.MANAGE)
    total = document.chunks.count()
    pages = max(1, -(-total // PASSAGES_PER_PAGE))
    number = min(max(1, _int(request.GET.get("page"), 1)), pages)
    start = (number - 1) * PASSAGES_PER_PAGE
    ordinals = dict(document.chunks.order_by("ordinal").values_list("pk", "ordinal")[start : start + PASSAGES_PER_PAGE])
    passages = []
    if ordinals:
        # Through the chat's own path: the passages as the assistant would be given them
        # (redacted, and none while the document is not ready).
        seen = document_passages(
            user=request.user, document=document, chunk_ids=(min(ordinals), max(ordinals)), limit=len(ordinals)
        )
        passages = [{"ordinal": ordinals.get(p.chunk_id, 0) + 1, "passage": p} for p in seen]
    return render(
        request,
        "portal/document.html",
        {
            "document": document,
            "row": document_row(
                Document.objects.select_related("uploaded_by")
                .prefetch_related("restricted_to_groups")
                .get(pk=document.pk)
            ),
            "parent": visible.filter(pk=document.parent_id).first() if document.parent_id else None,
            "children": visible.filter(parent_id=document.pk).order_by("name")[:100],
            "events": document.events.all()[:200],
            "versions": selectors.document_versions(document=document, documents=visible),
            "passages": passages,
            # Managers restrict any document here, wherever it sits in the paged table.
            "restrict_groups": Group.objects.order_by("name") if manages else [],
            "restricted_ids": set(document.restricted_to_groups.values_list("pk", flat=True)) if manages else set(),
            "passage_total": total,
            "passage_page": {"number": number, "pages": pages},
            "previous_url": f"?page={number - 1}" if number > 1 else "",
            "next_url": f"?page={number + 1}" if number < pages else "",
        },
    )
