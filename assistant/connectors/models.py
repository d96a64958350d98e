"""A connector (a source that feeds a collection) and the items it has brought in.

The database is the sync's memory: each ``ConnectorItem`` row says which source item
became which document, at which version and content hash, under which access. A
sync compares the source's listing with these rows and touches only what differs,
so a run that was killed half-way simply finds less to do when it runs again.
"""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy

from ingest.models import Collection, Document


class Connector(models.Model):
    class State(models.TextChoices):
        IDLE = "idle", gettext_lazy("Idle")
        QUEUED = "queued", gettext_lazy("Queued")
        RUNNING = "running", gettext_lazy("Running")

    collection = models.ForeignKey(Collection, on_delete=models.CASCADE, related_name="connectors")
    name = models.CharField(max_length=200, unique=True)
    kind = models.CharField(max_length=30, help_text="The source type: folder, smb, imap, web, ...")
    # What the source type needs (a path, globs, the group mapping); never a secret.
    settings = models.JSONField(default=dict, blank=True)
    # Fernet token of a JSON object (``assistant.connectors.secrets``); never shown back.
    credentials = models.BinaryField(default=b"", blank=True)
    # Minutes between scheduled runs; 0: only when asked.
    every_minutes = models.PositiveIntegerField(default=0)
    paused = models.BooleanField(default=False)
    created_by = models.ForeignKey("auth.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    # State of the current or last run.
    state = models.CharField(max_length=10, choices=State.choices, default=State.IDLE)
    # Touched while a run works; a running connector whose heartbeat stopped is
    # taken up again by the sweep (``liveness.connectors_sweep``).
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # The last source id handled by the current run (progress; a resumed run re-lists
    # and skips what is already in step).
    cursor = models.CharField(max_length=1000, blank=True, default="")
    # Where the source's own change tracking stands (SharePoint's delta link): the next
    # run asks only for what changed since. Kept across runs; empty: list everything.
    changes_cursor = models.TextField(blank=True, default="")
    seen = models.PositiveIntegerField(default=0)
    fetched = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    bytes_read = models.BigIntegerField(default=0)
    # The last run's counts per action (added, updated, ...).
    summary = models.JSONField(default=dict, blank=True)
    last_error = models.TextField(blank=True, default="")

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class ConnectorItem(models.Model):
    """One item of the source (a file) and the document it became."""

    connector = models.ForeignKey(Connector, on_delete=models.CASCADE, related_name="items")
    # Stable within the source: a folder's relative path, a message id, a URL.
    source_id = models.CharField(max_length=1000)
    # What a person opens: the absolute path, the URL.
    link = models.CharField(max_length=2000, blank=True, default="")
    # The source's cheap version (modification time and size, an ETag).
    version = models.CharField(max_length=200, blank=True, default="")
    content_hash = models.CharField(max_length=64, blank=True, default="")
    # Null while the item failed before it became a document. Deleting the document
    # (here or by hand) forgets the item: the next run brings it back if it is still there.
    document = models.ForeignKey(
        Document, null=True, blank=True, on_delete=models.CASCADE, related_name="connector_items"
    )
    # The groups the document is restricted to, as the mapping decided ("*": everyone).
    access = models.JSONField(default=list, blank=True)
    # What the source keeps about the item between runs (a web page's validators and links).
    memo = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True, default="")
    synced_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["connector_id", "source_id"]
        constraints = [
            models.UniqueConstraint(fields=["connector", "source_id"], name="connector_item_unique_source_id"),
        ]
        indexes = [models.Index(fields=["connector", "content_hash"], name="connector_item_hash_idx")]

    def __str__(self) -> str:
        return f"{self.connector_id}:{self.source_id}"
