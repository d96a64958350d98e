"""Conversations and the messages in them. Each answer records what produced it."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class Conversation(models.Model):
    # Empty for questions asked by an operator from the shell (``manage.py ask``).
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE, related_name="conversations"
    )
    collection = models.ForeignKey("ingest.Collection", on_delete=models.CASCADE, related_name="conversations")
    title = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-updated_at", "-id"]

    def __str__(self) -> str:
        return self.title or f"Conversation {self.pk}"


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
    # For questions: what retrieval actually searched for (a follow-up rewritten into a
    # standalone query), so an answer's sources can be audited.
    retrieval_query = models.TextField(blank=True)
    # For answers: citation markers naming no source given to the model, removed from
    # ``content`` (each citation in ``citations`` says whether the answer cited it).
    removed_citations = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"{self.role}: {self.content[:40]}"
