"""The audit log: one append-only row per thing that happened.

Rows name their actor, collection and target twice: by id (a link while it
exists) and by a snapshot of the name (what the record says forever). Deleting a
collection or a user never touches the log; deleting a user only clears the link
(``actor`` becomes null, the one change the guards allow) and, under the
``anonymize`` policy, replaces the name by a pseudonym (see ``services``).

``action`` is deliberately a plain string without database-level choices: a new
kind of event must not need a migration of this table.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import models
from django.utils import timezone

from assistant.audit.gate import gate_is_open


class AppendOnlyError(RuntimeError):
    """An attempt to change or delete audit rows outside the purge and deletion policy."""


def _only_forgets_actor(fields: dict[str, Any]) -> bool:
    """Deleting a user sets ``actor`` to null on their rows; nothing else may change."""
    return fields in ({"actor": None}, {"actor_id": None})


class AuditEventQuerySet(models.QuerySet["AuditEvent"]):
    def update(self, **kwargs: Any) -> int:
        if not gate_is_open() and not _only_forgets_actor(kwargs):
            raise AppendOnlyError("The audit log is append-only: its rows cannot be changed.")
        return super().update(**kwargs)

    def delete(self) -> tuple[int, dict[str, int]]:
        if not gate_is_open():
            raise AppendOnlyError("The audit log is append-only: rows leave it only through the retention purge.")
        return super().delete()


class AuditEvent(models.Model):
    class Action(models.TextChoices):
        QUESTION_ANSWERED = "question.answered", "Question answered"
        DOCUMENT_UPLOADED = "document.uploaded", "Document uploaded"
        DOCUMENT_DELETED = "document.deleted", "Document deleted"
        DOCUMENT_REINDEXED = "document.reindexed", "Document re-indexed"
        DOCUMENT_RESTRICTED = "document.restricted", "Document access changed"
        COLLECTION_CREATED = "collection.created", "Collection created"
        COLLECTION_DELETED = "collection.deleted", "Collection deleted"
        PERMISSION_GRANTED = "permission.granted", "Permission granted"
        PERMISSION_REVOKED = "permission.revoked", "Permission revoked"
        TOKEN_CREATED = "token.created", "API token created"
        TOKEN_REVOKED = "token.revoked", "API token revoked"
        TOKEN_DENIED = "token.denied", "API token refused"
        USER_LOGIN = "user.login", "Signed in"
        USER_LOGIN_FAILED = "user.login_failed", "Sign-in failed"
        USER_DATA_DELETED = "user.data_deleted", "User and their data deleted"
        # By the identity provider (details: source "oidc") or an administrator (source "portal").
        USER_DEACTIVATED = "user.deactivated", "User deactivated"
        USER_REACTIVATED = "user.reactivated", "User reactivated"
        USER_CREATED = "user.created", "User created"
        GROUP_CREATED = "group.created", "Group created"
        GROUP_RENAMED = "group.renamed", "Group renamed"
        GROUP_DELETED = "group.deleted", "Group deleted"
        COLLECTION_UPDATED = "collection.updated", "Collection renamed or described"
        SSO_BOUND = "sso.bound", "Single sign-on identity bound"
        SSO_REFUSED = "sso.refused", "Single sign-on refused"
        AUDIT_EXPORTED = "audit.exported", "Audit log exported"
        AUDIT_PURGED = "audit.purged", "Audit log purged (retention)"
        MCP_TOOL_CALLED = "mcp.tool_called", "MCP tool called"
        MCP_RESOURCE_READ = "mcp.resource_read", "MCP resource read"
        RETRIEVAL_TESTED = "retrieval.tested", "Retrieval tested as a user"
        MODEL_RECORDED = "model.recorded", "Model licence and provenance recorded"
        # Details carry the settings, never the credentials (assistant.connectors.services).
        CONNECTOR_ADDED = "connector.added", "Connector added"
        CONNECTOR_CHANGED = "connector.changed", "Connector changed, paused or resumed"
        CONNECTOR_REMOVED = "connector.removed", "Connector removed"
        CONNECTOR_SYNC_REQUESTED = "connector.sync_requested", "Connector sync requested"
        # The company directory (LDAP) and SCIM provisioning (assistant.directory); their
        # membership changes are permission.granted / permission.revoked with that source.
        DIRECTORY_REFUSED = "directory.refused", "Directory sign-in refused"
        DIRECTORY_SYNCED = "directory.synced", "Directory synchronised"
        SCIM_TOKEN_CREATED = "scim.token_created", "SCIM token created"
        SCIM_TOKEN_REVOKED = "scim.token_revoked", "SCIM token revoked"
        SCIM_USER_CHANGED = "scim.user_changed", "User changed by SCIM"

    created_at = models.DateTimeField(default=timezone.now, db_index=True, editable=False)
    action = models.CharField(max_length=40)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    actor_username = models.CharField(max_length=150, blank=True)
    collection_id = models.BigIntegerField(null=True, blank=True)
    collection_name = models.CharField(max_length=200, blank=True)
    target_type = models.CharField(max_length=60, blank=True)
    target_id = models.CharField(max_length=64, blank=True)
    details = models.JSONField(default=dict, blank=True)
    ip = models.GenericIPAddressField(null=True, blank=True)

    objects = AuditEventQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        # The auditor role (assistant.audit.auditors): reading and exporting the log.
        permissions = [("read_audit_log", "Can read and export the audit log (auditor)")]
        indexes = [
            models.Index(fields=["action", "created_at"], name="audit_action_time"),
            models.Index(fields=["actor_username", "created_at"], name="audit_actor_time"),
            models.Index(fields=["collection_id", "created_at"], name="audit_collection_time"),
        ]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M:%S} {self.action} {self.actor_username or '-'}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding:
            raise AppendOnlyError("The audit log is append-only: a recorded event cannot be changed.")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        raise AppendOnlyError("The audit log is append-only: rows leave it only through the retention purge.")
