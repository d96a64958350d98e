"""Where a user or a group comes from: the company directory (LDAP) or provisioning (SCIM).

A user or group without a row here is local (made in the portal or at the shell);
single sign-on users are known by their ``accounts.ExternalIdentity``. A directory
account is matched by its ``external_id`` (the entry's entryUUID / objectGUID, or the
SCIM client's id), never by a user name that a local account may already hold.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.models import Group
from django.db import models
from django.utils.translation import gettext_lazy


class Source(models.TextChoices):
    LOCAL = "local", gettext_lazy("Local")
    OIDC = "oidc", gettext_lazy("Single sign-on (OIDC)")
    LDAP = "ldap", gettext_lazy("Directory (LDAP)")
    SCIM = "scim", gettext_lazy("Provisioning (SCIM)")


class DirectoryAccount(models.Model):
    """A user the directory or a SCIM client owns: their profile and groups follow it."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="directory_account")
    source = models.CharField(max_length=10, choices=Source.choices)
    # LDAP: the entry's unique id (entryUUID, objectGUID), else its DN. SCIM: the
    # client's externalId, when it sends one.
    external_id = models.CharField(max_length=255, blank=True)
    dn = models.CharField(max_length=1024, blank=True)
    last_synced_at = models.DateTimeField(null=True, blank=True)
    # Set when the directory (or the SCIM client) took the account away; a later
    # sign-in or re-provisioning may give it back, an administrator's deactivation not.
    deprovisioned_at = models.DateTimeField(null=True, blank=True)
    # SCIM: the client deleted the resource. The account stays (deactivated) for its
    # conversations and audit trail, but the client no longer sees it.
    removed_at = models.DateTimeField(null=True, blank=True)
    # SCIM: what the client sent that the user model does not hold (displayName, the
    # whole name, every e-mail), given back as sent. Never read for access decisions.
    attributes = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["source", "external_id"],
                condition=~models.Q(external_id=""),
                name="directory_account_unique_external_id",
            )
        ]

    def __str__(self) -> str:
        return f"{self.user_id} from {self.source}"


class DirectoryGroup(models.Model):
    """A product group whose members the directory or a SCIM client decides."""

    group = models.OneToOneField(Group, on_delete=models.CASCADE, related_name="directory_group")
    source = models.CharField(max_length=10, choices=Source.choices)
    external_id = models.CharField(max_length=1024, blank=True)  # LDAP: the group's DN
    last_synced_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.group_id} from {self.source}"


class ScimToken(models.Model):
    """The bearer token a SCIM client (Entra ID, Okta) provisions with.

    Separate from the personal API tokens: it belongs to no user, opens only
    ``/scim/v2/`` and reads no documents. Only a SHA-256 is stored.
    """

    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16, unique=True)
    token_hash = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"
