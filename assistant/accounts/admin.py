from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from assistant.accounts.models import CollectionGrant
from assistant.audit.services import permission_change_record


@admin.register(CollectionGrant)
class CollectionGrantAdmin(admin.ModelAdmin):
    list_display = ("collection", "group", "user", "role", "created_at")
    list_filter = ("role", "collection")

    # Every grant given or taken away here is audited (the admin's own log is not
    # the audit log: it can be edited and is not exported).
    def save_model(self, request: HttpRequest, obj: CollectionGrant, form: Any, change: bool) -> None:
        if change:
            # A changed grant is the old one taken away and the new one given.
            previous = CollectionGrant.objects.select_related("collection", "group", "user").get(pk=obj.pk)
            permission_change_record(grant=previous, granted=False, request=request)
        super().save_model(request, obj, form, change)
        permission_change_record(grant=obj, granted=True, request=request)

    def delete_model(self, request: HttpRequest, obj: CollectionGrant) -> None:
        permission_change_record(grant=obj, granted=False, request=request)
        super().delete_model(request, obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[CollectionGrant]) -> None:
        for grant in queryset.select_related("collection", "group", "user"):
            permission_change_record(grant=grant, granted=False, request=request)
        super().delete_queryset(request, queryset)
