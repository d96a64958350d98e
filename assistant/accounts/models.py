"""Who may read, change or manage a collection.

A grant names either a group or a single user. Superusers see every collection; the
creator of a collection manages it. The selectors in ``selectors.py`` are the only
place these rules are read.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.models import Group
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy


class Role(models.TextChoices):
    READ = "read", gettext_lazy("Read")
    WRITE = "write", gettext_lazy("Write (upload and delete)")
    MANAGE = "manage", gettext_lazy("Manage (grant access)")


ROLE_ORDER = {Role.READ: 1, Role.WRITE: 2, Role.MANAGE: 3}


class CollectionGrant(models.Model):
    collection = models.ForeignKey("ingest.Collection", on_delete=models.CASCADE, related_name="grants")
    group = models.ForeignKey(Group, null=True, blank=True, on_delete=models.CASCADE, related_name="collection_grants")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE, related_name="collection_grants"
    )
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.READ)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=(Q(group__isnull=False, user__isnull=True) | Q(group__isnull=True, user__isnull=False)),
                name="grant_names_group_xor_user",
            ),
            models.UniqueConstraint(fields=["collection", "group"], name="grant_unique_group"),
            models.UniqueConstraint(fields=["collection", "user"], name="grant_unique_user"),
        ]

    def __str__(self) -> str:
        return f"{self.group or self.user} {self.role} {self.collection_id}"


class ApiToken(models.Model):
    """A personal token for the REST API and the OpenAI-compatible endpoints.

    Only a SHA-256 of the token is stored: the plaintext is shown once, at creation.
    ``prefix`` is a random public part of the token that finds the row without a
    scan; the hash is then compared in constant time.
    """

    class Scope(models.TextChoices):
        READ = "read", gettext_lazy("Read (search, ask, conversations, feedback)")
        WRITE = "write", gettext_lazy("Read and write (also collections, documents, members)")

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16, unique=True)
    token_hash = models.CharField(max_length=64)
    scope = models.CharField(max_length=10, choices=Scope.choices, default=Scope.READ)
    expires_at = models.DateTimeField()
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"


class ExternalIdentity(models.Model):
    """The single sign-on identity a user is bound to: the provider's issuer and subject.

    A sign-in is matched by ``(issuer, subject)``, which the provider never reuses,
    and not by a user name, which it may give to someone else later. ``refresh_token``
    is kept encrypted (``assistant.accounts.sso``) for the periodic re-check of the
    account and its groups; it is never shown or logged.
    """

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="external_identity")
    issuer = models.CharField(max_length=255)
    subject = models.CharField(max_length=255)
    refresh_token = models.TextField(blank=True, editable=False)
    # When the provider last confirmed the account and its groups.
    last_checked_at = models.DateTimeField()
    # Set when the re-check deactivated the user because the provider refused the
    # account; the next interactive sign-in at the provider makes them active again.
    deactivated_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["issuer", "subject"], name="identity_unique_issuer_subject")]

    def __str__(self) -> str:
        return f"{self.subject} at {self.issuer}"


class Preference(models.Model):
    """A user's own settings for the interface: the language it speaks to them in.

    An empty ``language`` follows the browser (Accept-Language); a chosen one wins on
    every browser the user signs in from (``assistant.accounts.language``).
    """

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="preference")
    # Checked against settings.LANGUAGES by the service, not by field choices, so that
    # adding a language needs no migration.
    language = models.CharField(max_length=16, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.user_id}: {self.language or 'browser'}"
