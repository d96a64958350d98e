"""The admin portal: collections, uploads and their live status."""

from __future__ import annotations

import json

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from assistant.accounts.models import Role
from assistant.accounts.selectors import collections_with_role, user_can, user_can_create_collections
from assistant.chat import feedback as chat_feedback
from ingest import selectors, services
from ingest.models import Collection, Document


class CollectionForm(forms.Form):
    name = forms.CharField(max_length=200)
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))


class MultipleFileInput(forms.ClearableFileInput):
    allow_multiple_selected = True


class UploadForm(forms.Form):
    # Named like the request's FILES key on purpose; Django collects declared fields
    # into ``base_fields``, so it does not shadow ``Form.files`` at run time.
    files = forms.FileField(widget=MultipleFileInput(attrs={"multiple": True}))  # type: ignore[assignment]


def _collection_for(request: HttpRequest, collection_id: int, role: Role) -> Collection:
    collection = get_object_or_404(Collection, pk=collection_id)
    if not user_can(user=request.user, collection=collection, role=role):
        raise PermissionDenied
    return collection


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
        (c, selectors.collection_summary(collection=c))
        for c in collections_with_role(user=request.user, role=Role.WRITE)
    ]
    return render(request, "portal/home.html", {"collections": collections, "form": form, "can_create": can_create})


@login_required
def collection_detail(request: HttpRequest, collection_id: int) -> HttpResponse:
    collection = _collection_for(request, collection_id, Role.WRITE)
    return render(
        request,
        "portal/collection.html",
        {
            "collection": collection,
            "documents": [selectors.document_as_dict(d) for d in selectors.collection_documents(collection=collection)],
            "summary": selectors.collection_summary(collection=collection),
            "form": UploadForm(),
        },
    )


@login_required
@require_POST
def upload(request: HttpRequest, collection_id: int) -> HttpResponse:
    collection = _collection_for(request, collection_id, Role.WRITE)
    files = request.FILES.getlist("files")
    if not files:
        messages.error(request, "Choose at least one file to upload.")
    queued: list[int] = []
    for uploaded in files:
        try:
            result = services.document_upload(
                collection=collection,
                name=uploaded.name or "upload",
                fileobj=uploaded,
                user=request.user,
                enqueue=False,
            )
        except services.UploadRejected as exc:
            messages.error(request, f"{uploaded.name}: {exc}")
            continue
        if result.duplicate:
            messages.info(request, f"{uploaded.name}: already in this collection as “{result.document.name}”.")
        else:
            queued.append(result.document.pk)
    services.documents_enqueue(queued)  # many small files: a few messages, batches for the worker
    return redirect("portal:collection", collection_id=collection.pk)


@login_required
def documents_status(request: HttpRequest, collection_id: int) -> JsonResponse:
    collection = _collection_for(request, collection_id, Role.WRITE)
    return JsonResponse(
        {
            "summary": selectors.collection_summary(collection=collection),
            "documents": [selectors.document_as_dict(d) for d in selectors.collection_documents(collection=collection)],
        }
    )


@login_required
@require_POST
def document_delete(request: HttpRequest, document_id: int) -> HttpResponse:
    document = get_object_or_404(Document, pk=document_id)
    collection = _collection_for(request, document.collection_id, Role.WRITE)
    services.document_delete(document=document)
    messages.success(request, f"Deleted “{document.name}”.")
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
