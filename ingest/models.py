"""Collections, documents and chunks: the source of truth for everything searchable.

The FAISS index on disk is a cache derived from ``Chunk.embedding``; it can be
rebuilt from these rows at any time (``manage.py rebuild_index``).
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy


class Collection(models.Model):
    name = models.CharField(max_length=200, unique=True)
    description = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


def document_upload_path(instance: Document, filename: str) -> str:
    # The stored name is opaque: the original name is kept in the row, and a name an
    # uploader chose never becomes a path on disk.
    return f"collections/{instance.collection_id}/{uuid.uuid4().hex}"


class Document(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued", gettext_lazy("Queued")
        PARSING = "parsing", gettext_lazy("Parsing")
        EMBEDDING = "embedding", gettext_lazy("Embedding")
        READY = "ready", gettext_lazy("Ready")
        FAILED = "failed", gettext_lazy("Failed")

    collection = models.ForeignKey(Collection, on_delete=models.CASCADE, related_name="documents")
    # An e-mail attachment or archive member points at the document it came from.
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.CASCADE, related_name="children")
    # A new version keeps the old one serving until it is ready, then replaces it.
    supersedes = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="superseded_by"
    )
    name = models.CharField(max_length=500, help_text="The file name as uploaded.")
    file = models.FileField(upload_to=document_upload_path, max_length=500)
    content_hash = models.CharField(max_length=64, help_text="SHA-256 of the uploaded bytes.")
    # The same bytes were already in the collection, in a document hidden from this
    # uploader: they get a document of their own, so an upload reveals nothing of
    # the hidden one (``ingest.services.document_upload``).
    separate_copy = models.BooleanField(default=False)
    size = models.BigIntegerField(default=0)
    file_type = models.CharField(max_length=50, blank=True, help_text="Detected from the content.")
    title = models.CharField(
        max_length=500, blank=True, default="", help_text="The first title no other document opens with, else the name."
    )
    # The headings of its opening pages: what may be its title (``ingest.context``).
    title_candidates = models.JSONField(default=list, blank=True)
    # What the document is (readable name, title, period): embedded and indexed with
    # every chunk (``ingest.chunking.indexed_text``).
    context = models.CharField(max_length=500, blank=True, default="")
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.QUEUED, db_index=True)
    error = models.TextField(blank=True)
    pages = models.PositiveIntegerField(null=True, blank=True)
    chunk_count = models.PositiveIntegerField(default=0)
    # Progress a person can see: chunks embedded out of the total found.
    progress_done = models.PositiveIntegerField(default=0)
    progress_total = models.PositiveIntegerField(default=0)
    # Liveness of the worker holding this document; the sweep re-queues or fails
    # documents whose heartbeat stopped (a killed worker, a lost message).
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    # Seconds per stage of the last run: parse, chunk, embed, index.
    timings = models.JSONField(default=dict, blank=True)
    uploaded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Empty: everyone who may read the collection sees the document. Otherwise only
    # members of these groups do (plus the collection's managers and the uploader;
    # the rules are in ``assistant.accounts.selectors``). Set in the transaction that
    # creates the row, and inherited by attachments, archive members and new versions.
    restricted_to_groups = models.ManyToManyField(
        "auth.Group", blank=True, related_name="restricted_documents", help_text="Empty: no restriction."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["collection", "content_hash"],
                condition=models.Q(separate_copy=False),
                name="document_unique_content_per_collection",
            )
        ]
        # The portal's documents table reads one page of a collection at a time, in
        # each order it offers: every order is an index walk, never a sort of the
        # whole collection (``ingest.selectors.documents_page``).
        indexes = [
            models.Index(fields=["collection", "created_at", "id"], name="document_collection_time_idx"),
            models.Index(fields=["collection", "name", "id"], name="document_collection_name_idx"),
            models.Index(fields=["collection", "size", "id"], name="document_collection_size_idx"),
            models.Index(fields=["collection", "status", "created_at", "id"], name="document_collection_status_idx"),
            models.Index(fields=["collection", "file_type", "created_at", "id"], name="document_collection_type_idx"),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def is_finished(self) -> bool:
        return self.status in FINISHED


class RemovedDocument(models.Model):
    """Who could see a document that was deleted or replaced by a new version.

    Old answers keep citing a document after it is gone (their stored citations carry
    its text), so whether they may still be shown is decided from this record: a
    replaced document is seen by whoever sees the version that replaced it, a deleted
    one by whoever could see it when it was deleted
    (``assistant.accounts.selectors.cited_documents_hidden_from``).
    """

    document_id = models.BigIntegerField(unique=True)
    collection = models.ForeignKey(Collection, on_delete=models.CASCADE, related_name="+")
    # The id of the new version that replaced it (it may be gone too, with a record of its own).
    replaced_by_id = models.BigIntegerField(null=True, blank=True)
    restricted_to_groups = models.ManyToManyField("auth.Group", blank=True, related_name="+")
    uploaded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    removed_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"removed document {self.document_id}"


class DocumentEvent(models.Model):
    """One change of a document's status, for its history (``ingest.claims.documents_status_set``)."""

    document = models.ForeignKey(Document, on_delete=models.CASCADE, related_name="events")
    status = models.CharField(max_length=20, choices=Document.Status.choices)
    message = models.TextField(blank=True)
    at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["at", "id"]
        indexes = [models.Index(fields=["document", "at"], name="document_event_idx")]

    def __str__(self) -> str:
        return f"{self.document_id}: {self.status}"


FINISHED = (Document.Status.READY, Document.Status.FAILED)
IN_PROGRESS = (Document.Status.PARSING, Document.Status.EMBEDDING)


class Chunk(models.Model):
    """One passage of a document, with the vector it was indexed under."""

    document = models.ForeignKey(Document, on_delete=models.CASCADE, related_name="chunks")
    # Denormalised from the document so that a collection's index can be rebuilt and
    # filtered without a join.
    collection = models.ForeignKey(Collection, on_delete=models.CASCADE, related_name="chunks")
    ordinal = models.PositiveIntegerField()
    heading = models.CharField(max_length=500, blank=True)
    text = models.TextField()
    page_start = models.PositiveIntegerField(null=True, blank=True)
    page_end = models.PositiveIntegerField(null=True, blank=True)
    # float32 little-endian, L2-normalised, ``EMBEDDING_DIMENSIONS`` values.
    embedding = models.BinaryField()
    # BLAKE2b of the embedded text: a text already embedded in the collection (an
    # unchanged passage of a new version, boilerplate repeated across files) reuses
    # its vector instead of being embedded again.
    text_hash = models.CharField(max_length=32, blank=True, default="")

    class Meta:
        ordering = ["document_id", "ordinal"]
        constraints = [models.UniqueConstraint(fields=["document", "ordinal"], name="chunk_unique_ordinal")]
        indexes = [
            models.Index(fields=["collection", "id"], name="chunk_collection_idx"),
            models.Index(fields=["collection", "text_hash"], name="chunk_text_hash_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.document_id}#{self.ordinal}"

    @property
    def page_label(self) -> str:
        if self.page_start is None:
            return ""
        if self.page_end and self.page_end != self.page_start:
            return f"pp. {self.page_start}-{self.page_end}"
        return f"p. {self.page_start}"
