"""Conversations and the messages in them. Each answer records what produced it."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils.translation import gettext


class Conversation(models.Model):
    # Empty for questions asked by an operator from the shell (``manage.py ask``).
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE, related_name="conversations"
    )
    collection = models.ForeignKey("ingest.Collection", on_delete=models.CASCADE, related_name="conversations")
    title = models.CharField(max_length=200, blank=True)
    # "Chat with this document": retrieval is limited to this one document (as the
    # asker may read it). The conversation goes with the document.
    document = models.ForeignKey(
        "ingest.Document", null=True, blank=True, on_delete=models.CASCADE, related_name="conversations"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-updated_at", "-id"]

    def __str__(self) -> str:
        return self.title or gettext("Conversation %(number)s") % {"number": self.pk}


class Message(models.Model):
    class Role(models.TextChoices):
        USER = "user", "User"
        ASSISTANT = "assistant", "Assistant"

    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="messages")
    role = models.CharField(max_length=10, choices=Role.choices)
    content = models.TextField(blank=True)
    # For answers: the model id the LLM server reported, the chunk ids it was given
    # (in prompt order), and the citations as shown to the user.
    model = models.CharField(max_length=200, blank=True)
    chunk_ids = models.JSONField(default=list, blank=True)
    citations = models.JSONField(default=list, blank=True)
    error = models.TextField(blank=True)
    latency_ms = models.PositiveIntegerField(null=True, blank=True)
    # For answers: milliseconds from the question to the first text streamed back
    # (thinking included: the asker sees something move), and where the time went
    # (``rewrite_ms``, ``retrieval_ms``, ``prompt_ms``, ``model_first_token_ms``,
    # ``generation_ms``; see ``assistant.chat.services.answer_stream``).
    first_token_ms = models.PositiveIntegerField(null=True, blank=True)
    timings = models.JSONField(default=dict, blank=True)
    # For questions: what retrieval actually searched for (a follow-up rewritten into a
    # standalone query), so an answer's sources can be audited.
    retrieval_query = models.TextField(blank=True)
    # For answers: citation markers naming no source given to the model, removed from
    # ``content`` (each citation in ``citations`` says whether the answer cited it).
    removed_citations = models.PositiveIntegerField(default=0)
    # For answers of reasoning models: the thinking they streamed before answering,
    # kept apart from ``content`` (never cited, never searched, never given back).
    reasoning = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"{self.role}: {self.content[:40]}"


class Feedback(models.Model):
    """A user's thumbs up or down on one answer, with an optional comment."""

    class Rating(models.IntegerChoices):
        UP = 1, "Helpful"
        DOWN = -1, "Not helpful"

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="feedback")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="feedback")
    rating = models.SmallIntegerField(choices=Rating.choices)
    comment = models.TextField(blank=True, max_length=2000)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-updated_at", "-id"]
        constraints = [models.UniqueConstraint(fields=["message", "user"], name="feedback_unique_per_user")]

    def __str__(self) -> str:
        return f"{self.rating:+d} on {self.message_id}"


class IdempotencyKey(models.Model):
    """The first response to a request sent with an ``Idempotency-Key`` header.

    A retry with the same key, caller and request gets this response back instead of
    the work being done again; the same key with a different request is refused.
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=200)
    # Which operation the key was used for, and a digest of what was asked.
    scope = models.CharField(max_length=100)
    fingerprint = models.CharField(max_length=64)
    # Empty while the first request is still being answered.
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    response = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "key", "scope"], name="idempotency_unique_key")]
        indexes = [models.Index(fields=["created_at"], name="idempotency_created_idx")]

    def __str__(self) -> str:
        return f"{self.scope} {self.key}"
