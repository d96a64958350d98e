"""The admin portal: collections, uploads and their live status, and who may see them.

Everything a user is shown is built from the documents they may see
(``accounts.selectors.documents_visible_to``): lists, counts and the status JSON
never reveal a document restricted away from them.
"""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import Group
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from assistant.accounts import services as access_services
from assistant.accounts.models import CollectionGrant, Role
from assistant.accounts.selectors import (
    collection_grants,
    collections_with_role,
    document_for,
    documents_visible_to,
    user_can,
    user_can_create_collections,
)
from assistant.chat import feedback as chat_feedback
from ingest import selectors, services
from ingest.models import Collection


class CollectionForm(forms.Form):
    name = forms.CharField(max_length=200)
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))


class MultipleFileInput(forms.ClearableFileInput):
    allow_multiple_selected = True


class UploadForm(forms.Form):
    # Named like the request's FILES key on purpose; Django collects declared fields
    # into ``base_fields``, so it does not shadow ``Form.files`` at run time.
    files = forms.FileField(widget=MultipleFileInput(attrs={"multiple": True}))  # type: ignore[assignment]
    restrict_to_groups = forms.ModelMultipleChoiceField(
        queryset=Group.objects.none(), required=False, label="Only visible to", help_text="Empty: every reader."
    )

    def __init__(self, *args: Any, groups: QuerySet[Group], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["restrict_to_groups"].queryset = groups  # type: ignore[attr-defined]


class GrantForm(forms.Form):
    group = forms.ModelChoiceField(queryset=Group.objects.order_by("name"))
    role = forms.ChoiceField(choices=Role.choices)


class RestrictForm(forms.Form):
    document = forms.IntegerField()
    groups = forms.ModelMultipleChoiceField(queryset=Group.objects.order_by("name"), required=False)


def _upload_groups(request: HttpRequest, collection: Collection) -> QuerySet[Group]:
    """Groups an uploader may restrict a file to: any for a manager, else their own."""
    if user_can(user=request.user, collection=collection, role=Role.MANAGE):
        return Group.objects.order_by("name")
    return Group.objects.filter(user=request.user.pk).order_by("name")


def _collection_for(request: HttpRequest, collection_id: int, role: Role) -> Collection:
    # Not found, whether it does not exist or is not this user's: an id reveals nothing.
    return get_object_or_404(collections_with_role(user=request.user, role=role), pk=collection_id)


@login_required
def home(request: HttpRequest) -> HttpResponse:
    can_create = user_can_create_collections(request.user)
    form = CollectionForm(request.POST or None)
    if request.method == "POST":
        if not can_create:
            raise PermissionDenied
        if form.is_valid():
            try:
                collection = services.collection_create(
                    name=form.cleaned_data["name"], description=form.cleaned_data["description"], user=request.user
                )
            except services.CollectionNameTaken:
                form.add_error("name", "A collection with this name already exists.")
            else:
                return redirect("portal:collection", collection_id=collection.pk)
    collections = [
        (c, selectors.collection_summary(collection=c, documents=documents_visible_to(user=request.user, collection=c)))
        for c in collections_with_role(user=request.user, role=Role.WRITE)
    ]
    return render(request, "portal/home.html", {"collections": collections, "form": form, "can_create": can_create})


def _documents_payload(request: HttpRequest, collection: Collection) -> dict[str, Any]:
    visible = documents_visible_to(user=request.user, collection=collection)
    return {
        "summary": selectors.collection_summary(collection=collection, documents=visible),
        "documents": [
            selectors.document_as_dict(d)
            for d in selectors.collection_documents(collection=collection, documents=visible)
        ],
    }


@login_required
def collection_detail(request: HttpRequest, collection_id: int) -> HttpResponse:
    collection = _collection_for(request, collection_id, Role.WRITE)
    manages = user_can(user=request.user, collection=collection, role=Role.MANAGE)
    return render(
        request,
        "portal/collection.html",
        {
            "collection": collection,
            **_documents_payload(request, collection),
            "form": UploadForm(groups=_upload_groups(request, collection)),
            "manages": manages,
            "grants": collection_grants(collection=collection) if manages else [],
            "groups": Group.objects.order_by("name") if manages else [],
            "roles": Role.choices,
        },
    )


@login_required
@require_POST
def upload(request: HttpRequest, collection_id: int) -> HttpResponse:
    collection = _collection_for(request, collection_id, Role.WRITE)
    form = UploadForm(request.POST, request.FILES, groups=_upload_groups(request, collection))
    files = request.FILES.getlist("files")
    if not files:
        messages.error(request, "Choose at least one file to upload.")
    if not form.is_valid() and "restrict_to_groups" in form.errors:
        messages.error(request, "Choose groups from the list to restrict the files to.")
        return redirect("portal:collection", collection_id=collection.pk)
    restrict = list(form.cleaned_data.get("restrict_to_groups") or [])
    outcomes = services.documents_upload_many(
        collection=collection,
        files=[(f.name or "upload", f) for f in files],
        user=request.user,
        restrict_to_groups=restrict,
    )
    for outcome in outcomes:
        if outcome.result is None:
            messages.error(request, f"{outcome.name}: {outcome.error}")
        elif outcome.result.duplicate:
            # Only ever a document this user can see: bytes that are only in a hidden
            # one are stored as a fresh upload of theirs (see ``document_upload``).
            messages.info(request, f"{outcome.name}: already in this collection as “{outcome.result.document.name}”.")
    return redirect("portal:collection", collection_id=collection.pk)


@login_required
def documents_status(request: HttpRequest, collection_id: int) -> JsonResponse:
    collection = _collection_for(request, collection_id, Role.WRITE)
    return JsonResponse(_documents_payload(request, collection))


@login_required
@require_POST
def document_delete(request: HttpRequest, document_id: int) -> HttpResponse:
    try:
        document = document_for(user=request.user, document_id=document_id, role=Role.WRITE)
    except PermissionDenied as exc:
        raise Http404 from exc  # the same for a hidden document as for a missing one
    services.document_delete(document=document, user=request.user)
    messages.success(request, f"Deleted “{document.name}”.")
    return redirect("portal:collection", collection_id=document.collection_id)


@login_required
@require_POST
def access_grant(request: HttpRequest, collection_id: int) -> HttpResponse:
    collection = _collection_for(request, collection_id, Role.MANAGE)
    form = GrantForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose a group and a role.")
    else:
        group, role = form.cleaned_data["group"], form.cleaned_data["role"]
        access_services.collection_grant(collection=collection, group=group, role=role, actor=request.user)
        messages.success(request, f"Group “{group.name}” now has {role} access.")
    return redirect("portal:collection", collection_id=collection.pk)


@login_required
@require_POST
def access_revoke(request: HttpRequest, collection_id: int, grant_id: int) -> HttpResponse:
    collection = _collection_for(request, collection_id, Role.MANAGE)
    grant = get_object_or_404(
        CollectionGrant.objects.select_related("group", "user"), pk=grant_id, collection=collection
    )
    access_services.collection_revoke(collection=collection, group=grant.group, user=grant.user, actor=request.user)
    messages.success(request, f"Revoked the access of “{grant.group or grant.user}”.")
    return redirect("portal:collection", collection_id=collection.pk)


@login_required
@require_POST
def document_restrict(request: HttpRequest, collection_id: int) -> HttpResponse:
    collection = _collection_for(request, collection_id, Role.MANAGE)
    form = RestrictForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose a document and the groups to restrict it to.")
        return redirect("portal:collection", collection_id=collection.pk)
    try:
        document = document_for(user=request.user, document_id=form.cleaned_data["document"], role=Role.MANAGE)
    except PermissionDenied as exc:
        raise Http404 from exc
    if document.collection_id != collection.pk:
        raise Http404
    groups = list(form.cleaned_data["groups"])
    services.document_restrict(document=document, groups=groups, actor=request.user)
    if groups:
        messages.success(request, f"“{document.name}” is now visible only to {', '.join(g.name for g in groups)}.")
    else:
        messages.success(request, f"“{document.name}” is now visible to every reader of the collection.")
    return redirect("portal:collection", collection_id=collection.pk)


@login_required
def feedback_export(request: HttpRequest) -> StreamingHttpResponse:
    """Rated answers as chat-format JSONL for fine-tuning; superusers only."""
    if not request.user.is_superuser:
        raise PermissionDenied
    rating = request.GET.get("rating", "all")
    if rating not in ("up", "down", "all"):
        rating = "all"
    lines = (json.dumps(record, ensure_ascii=False) + "\n" for record in chat_feedback.feedback_export(rating=rating))
    response = StreamingHttpResponse(lines, content_type="application/jsonl; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="feedback-{rating}.jsonl"'
    return response
