from datetime import UTC, datetime
from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from assistant.accounts.models import CollectionGrant, ExternalIdentity
from assistant.audit.models import AuditEvent
from assistant.audit.services import audit_record, permission_change_record


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


@admin.register(ExternalIdentity)
class ExternalIdentityAdmin(admin.ModelAdmin):
    """Which provider account each single sign-on user is; an administrator can bind one by hand.

    Binding here hands an existing account (say, a local one whose password was made
    unusable, or one the provider's recycled user name must not take) to the person
    with that issuer and subject; it is checked with the provider at their next
    sign-in. The refresh token is never shown.
    """

    list_display = ("user", "issuer", "subject", "last_checked_at", "deactivated_at")
    search_fields = ("user__username", "subject")
    fields = ("user", "issuer", "subject", "last_checked_at", "deactivated_at")
    readonly_fields = ("last_checked_at", "deactivated_at")

    def get_readonly_fields(self, request: HttpRequest, obj: ExternalIdentity | None = None) -> Any:
        # A binding is made or deleted, never moved to another person.
        return ("user", "issuer", "subject", *self.readonly_fields) if obj is not None else self.readonly_fields

    def save_model(self, request: HttpRequest, obj: ExternalIdentity, form: Any, change: bool) -> None:
        if not change:
            # Due at once: without a refresh token the first re-check asks for a
            # sign-in at the provider, which confirms the binding.
            obj.last_checked_at = datetime(2000, 1, 1, tzinfo=UTC)
        super().save_model(request, obj, form, change)
        if not change:
            audit_record(
                action=AuditEvent.Action.SSO_BOUND, target=obj.user, request=request,
                details={"source": "admin", "user": obj.user.get_username(), "issuer": obj.issuer,
                         "subject": obj.subject},
            )  # fmt: skip
