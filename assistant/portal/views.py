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
from django.contrib.auth import get_user_model
from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import Group
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_POST

from assistant.accounts import services as access_services
from assistant.accounts.models import CollectionGrant, Role
from assistant.accounts.selectors import (
    collection_grants,
    collections_readable_by,
    collections_with_role,
    document_for,
    documents_visible_to,
    user_can,
    user_can_create_collections,
)
from assistant.chat import feedback as chat_feedback
from assistant.portal import connectors, documents
from ingest import selectors, services
from ingest.models import Collection


class CollectionForm(forms.Form):
    name = forms.CharField(label=gettext_lazy("Name"), max_length=200)
    description = forms.CharField(
        label=gettext_lazy("Description"), required=False, widget=forms.Textarea(attrs={"rows": 2})
    )


class MultipleFileInput(forms.ClearableFileInput):
    allow_multiple_selected = True


class UploadForm(forms.Form):
    # Named like the request's FILES key on purpose; Django collects declared fields
    # into ``base_fields``, so it does not shadow ``Form.files`` at run time.
    files = forms.FileField(widget=MultipleFileInput(attrs={"multiple": True}))  # type: ignore[assignment]
    restrict_to_groups = forms.ModelMultipleChoiceField(
        queryset=Group.objects.none(),
        required=False,
        label=gettext_lazy("Only visible to"),
        help_text=gettext_lazy("Empty: every reader."),
    )

    def __init__(self, *args: Any, groups: QuerySet[Group], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["restrict_to_groups"].queryset = groups  # type: ignore[attr-defined]


class GrantForm(forms.Form):
    """A role for a group, or for one user named by their user name."""

    group = forms.ModelChoiceField(queryset=Group.objects.order_by("name"), required=False)
    username = forms.CharField(max_length=150, required=False)
    role = forms.ChoiceField(choices=Role.choices)

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        username = (data.get("username") or "").strip()
        if bool(data.get("group")) == bool(username):
            raise forms.ValidationError(_("Choose a group or name a user."))
        if username:
            user = get_user_model().objects.filter(username=username).first()
            if user is None:
                raise forms.ValidationError(_("No user named “%(name)s”.") % {"name": username})
            data["user"] = user
        return data


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
    writable = collections_with_role(user=request.user, role=Role.WRITE)

    def summaries(found: QuerySet[Collection]) -> list[tuple[Collection, dict[str, int]]]:
        return [
            (
                c,
                selectors.collection_summary(
                    collection=c, documents=documents_visible_to(user=request.user, collection=c)
                ),
            )
            for c in found
        ]

    # Collections they only read: what they may ask about, counted as they see them.
    read_only = collections_readable_by(request.user).exclude(pk__in=writable.values("pk")).order_by("name")
    return render(
        request,
        "portal/home.html",
        {
            "collections": summaries(writable),
            "readable": summaries(read_only),
            "form": form,
            "can_create": can_create,
        },
    )


@login_required
@require_POST
def collection_edit(request: HttpRequest, collection_id: int) -> HttpResponse:
    collection = _collection_for(request, collection_id, Role.MANAGE)
    form = CollectionForm(request.POST)
    if not form.is_valid():
        messages.error(request, _("A collection needs a name."))
        return redirect("portal:collection", collection_id=collection.pk)
    try:
        services.collection_update(
            collection=collection,
            name=form.cleaned_data["name"],
            description=form.cleaned_data["description"],
            user=request.user,
        )
    except services.CollectionNameTaken:
        messages.error(request, _("A collection with this name already exists."))
    else:
        messages.success(request, _("Saved the name and description."))
    return redirect("portal:collection", collection_id=collection.pk)


@login_required
def collection_detail(request: HttpRequest, collection_id: int) -> HttpResponse:
    collection = _collection_for(request, collection_id, Role.WRITE)
    manages = user_can(user=request.user, collection=collection, role=Role.MANAGE)
    return render(
        request,
        "portal/collection.html",
        {
            "collection": collection,
            **documents.table_context(request, collection),
            "form": UploadForm(groups=_upload_groups(request, collection)),
            "manages": manages,
            "grants": collection_grants(collection=collection) if manages else [],
            "groups": Group.objects.order_by("name") if manages else [],
            "roles": Role.choices,
            "edit_form": CollectionForm(initial={"name": collection.name, "description": collection.description})
            if manages
            else None,
            **(connectors.connectors_context(collection) if manages else {}),
        },
    )


@login_required
@require_POST
def document_delete(request: HttpRequest, document_id: int) -> HttpResponse:
    try:
        document = document_for(user=request.user, document_id=document_id, role=Role.WRITE)
    except PermissionDenied as exc:
        raise Http404 from exc  # the same for a hidden document as for a missing one
    services.document_delete(document=document, user=request.user)
    messages.success(request, _("Deleted “%(title)s”.") % {"title": document.name})
    return redirect("portal:collection", collection_id=document.collection_id)


@login_required
@require_POST
def access_grant(request: HttpRequest, collection_id: int) -> HttpResponse:
    collection = _collection_for(request, collection_id, Role.MANAGE)
    form = GrantForm(request.POST)
    if not form.is_valid():
        for error in form.non_field_errors() or [_("Choose a group or a user, and a role.")]:
            messages.error(request, str(error))
    else:
        group, user, role = form.cleaned_data["group"], form.cleaned_data.get("user"), form.cleaned_data["role"]
        name = group.name if group is not None else form.cleaned_data["user"].get_username()
        access_services.collection_grant(collection=collection, group=group, user=user, role=role, actor=request.user)
        if group is not None:
            text = _("Group “%(name)s” now has %(role)s access.") % {"name": name, "role": Role(role).label}
        else:
            text = _("User “%(name)s” now has %(role)s access.") % {"name": name, "role": Role(role).label}
        messages.success(request, text)
    return redirect("portal:collection", collection_id=collection.pk)


@login_required
@require_POST
def access_revoke(request: HttpRequest, collection_id: int, grant_id: int) -> HttpResponse:
    collection = _collection_for(request, collection_id, Role.MANAGE)
    grant = get_object_or_404(
        CollectionGrant.objects.select_related("group", "user"), pk=grant_id, collection=collection
    )
    access_services.collection_revoke(collection=collection, group=grant.group, user=grant.user, actor=request.user)
    messages.success(request, _("Revoked the access of “%(name)s”.") % {"name": grant.group or grant.user})
    return redirect("portal:collection", collection_id=collection.pk)


@login_required
@require_POST
def document_restrict(request: HttpRequest, collection_id: int) -> HttpResponse:
    collection = _collection_for(request, collection_id, Role.MANAGE)
    form = RestrictForm(request.POST)
    if not form.is_valid():
        messages.error(request, _("Choose a document and the groups to restrict it to."))
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
        messages.success(
            request,
            _("“%(name)s” is now visible only to %(groups)s.")
            % {"name": document.name, "groups": ", ".join(g.name for g in groups)},
        )
    else:
        messages.success(
            request, _("“%(name)s” is now visible to every reader of the collection.") % {"name": document.name}
        )
    if request.POST.get("back") == "document":
        return redirect("portal:document", document_id=document.pk)
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
