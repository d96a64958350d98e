"""What an admin recorded about a model in use: which licence applies and where it came from.

Open-weights licences differ (Apache-2.0, Llama's community licence, Gemma's terms,
research-only ones ...), and the server cannot say which applies: an admin writes it
down. One row per model (``kind`` and ``name``); the packaged models need none, their
licence and provenance are known (``assistant.catalog.packaged``), but a row recorded
for one overrides them.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _


class ModelKind(models.TextChoices):
    LLM = "llm", _("Language model")
    EMBEDDING = "embedding", _("Embedding model")
    RERANKER = "reranker", _("Reranker")


class ModelRecord(models.Model):
    kind = models.CharField(max_length=20, choices=ModelKind.choices)
    # The model's identity as the product names it: the LLM's model id, a model folder's path.
    name = models.CharField(max_length=500)
    licence = models.CharField(max_length=200, blank=True)
    source = models.CharField(max_length=500, blank=True)  # where it was obtained: a URL, a vendor, a package
    file_sha256 = models.CharField(max_length=64, blank=True)
    recorded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    recorded_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["kind", "name"], name="model_record_unique_kind_name")]
        ordering = ["kind", "name"]

    def __str__(self) -> str:
        return f"{self.kind} {self.name}"
