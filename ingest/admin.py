"""Django admin for collections and documents.

Documents are created only through the portal, the API or ``manage.py ingest``
(the services), never here, so every upload follows the same rules; the admin can
inspect, and deleting goes through the same service as everywhere else.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from ingest import services
from ingest.models import Collection, Document


@admin.register(Collection)
class CollectionAdmin(admin.ModelAdmin):
    list_display = ("name", "created_by", "created_at")
    search_fields = ("name",)

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

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def delete_model(self, request: HttpRequest, obj: Document) -> None:
        services.document_delete(document=obj, user=request.user)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Document]) -> None:
        for document in queryset:
            services.document_delete(document=document, user=request.user)
