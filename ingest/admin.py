"""Django admin for collections and documents.

Documents are created only through the portal, the API or ``manage.py ingest``
(the services), never here, so every upload follows the same rules; the admin can
inspect, and deleting and restricting go through the same services as everywhere
else (so a restriction reaches a document's attachments and is audited).
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.forms import ModelForm
from django.http import HttpRequest

from assistant.accounts.models import Role
from assistant.accounts.selectors import collections_readable_by, documents_hidden_from, user_can
from ingest import services
from ingest.models import Collection, Document


@admin.register(Collection)
class CollectionAdmin(admin.ModelAdmin):
    list_display = ("name", "created_by", "created_at")
    search_fields = ("name",)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Collection]:
        # A staff user given the admin's view permission still sees only the
        # collections they may read: the admin is one more surface, not a way around.
        return super().get_queryset(request).filter(pk__in=collections_readable_by(request.user).values("pk"))

    def delete_model(self, request: HttpRequest, obj: Collection) -> None:
        services.collection_delete(collection=obj, user=request.user)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Collection]) -> None:
        for collection in queryset:
            services.collection_delete(collection=collection, user=request.user)


@admin.register(Document)
class DocumentAdmin(admin.ModelAdmin):
    list_display = ("name", "collection", "status", "file_type", "pages", "chunk_count", "created_at")
    list_filter = ("status", "collection", "file_type")
    search_fields = ("name", "content_hash")
    readonly_fields = [f.name for f in Document._meta.fields]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Document]:
        # The same rule as every list in the product: documents of collections the
        # user may read, less those restricted away from them (their names included).
        readable = list(collections_readable_by(request.user).values_list("pk", flat=True))
        hidden = documents_hidden_from(user=request.user, collection_ids=readable)
        return super().get_queryset(request).filter(collection_id__in=readable).exclude(pk__in=hidden.values("pk"))

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        # The restriction is the one thing changed here, and only by whoever may
        # change it in the portal: a manager of the document's collection.
        fields = list(self.readonly_fields)
        if obj is None or not user_can(user=request.user, collection=obj.collection, role=Role.MANAGE):
            fields.append("restricted_to_groups")
        return fields

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: Document, form: ModelForm, change: bool) -> None:
        # Every column is read-only here; writing the row back would only overwrite
        # what a worker changed since the page was loaded (status, progress).
        pass

    def save_related(self, request: HttpRequest, form: ModelForm, formsets: Any, change: bool) -> None:
        # Not form.save_m2m(): that would set this document's groups alone, leave its
        # attachments and pending versions unrestricted and record nothing.
        if "restricted_to_groups" in form.changed_data:
            groups = list(form.cleaned_data["restricted_to_groups"])
            services.document_restrict(document=form.instance, groups=groups, actor=request.user)
        for formset in formsets:
            self.save_formset(request, form, formset, change=change)

    def delete_model(self, request: HttpRequest, obj: Document) -> None:
        services.document_delete(document=obj, user=request.user)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Document]) -> None:
        for document in queryset:
            services.document_delete(document=document, user=request.user)
