"""Recording a model's licence and provenance: superusers only, always with a licence, always audited."""

from __future__ import annotations

import re
from typing import Any

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from assistant.audit.models import AuditEvent
from assistant.audit.services import audit_record
from assistant.catalog.models import ModelKind, ModelRecord

SHA256 = re.compile(r"^[0-9a-f]{64}$")


def model_record_save(
    *,
    actor: Any,
    kind: str,
    name: str,
    licence: str,
    source: str = "",
    file_sha256: str = "",
    request: Any = None,
) -> ModelRecord:
    """Record which licence applies to a model, and where it came from; the audit log keeps each change.

    A licence is required: a model is "recorded" only once someone has said which
    licence applies (open-weights licences differ too much to assume one).
    """
    if not getattr(actor, "is_superuser", False) or not actor.is_active:
        raise PermissionDenied(_("Only a superuser may record a model's licence."))
    if kind not in ModelKind.values:
        raise ValidationError(_("Unknown kind of model."))
    licence, source, name = licence.strip(), source.strip(), name.strip()
    file_sha256 = file_sha256.strip().lower()
    if not name:
        raise ValidationError(_("The model needs a name."))
    if not licence:
        raise ValidationError(_("Say which licence applies to this model."))
    if file_sha256 and not SHA256.match(file_sha256):
        raise ValidationError(_("A SHA-256 is 64 hexadecimal characters."))
    with transaction.atomic():
        record = ModelRecord.objects.select_for_update().filter(kind=kind, name=name).first()
        before = (
            {"licence": record.licence, "source": record.source, "file_sha256": record.file_sha256} if record else None
        )
        if record is None:
            record = ModelRecord(kind=kind, name=name)
        record.licence, record.source, record.file_sha256 = licence, source, file_sha256
        record.recorded_by, record.recorded_at = actor, timezone.now()
        record.save()
        audit_record(
            action=AuditEvent.Action.MODEL_RECORDED,
            actor=actor,
            target=record,
            details={
                "kind": kind,
                "name": name,
                "licence": licence,
                "source": source,
                "file_sha256": file_sha256,
                "before": before,
            },
            request=request,
        )
    return record
