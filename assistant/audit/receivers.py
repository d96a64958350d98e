"""Signal receivers: the only hooks Django offers for sign-ins and user deletion.

They hold no logic of their own; each calls one service.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth.signals import user_logged_in, user_login_failed
from django.db.models.signals import pre_delete
from django.dispatch import receiver
from django.http import HttpRequest

from assistant.audit.models import AuditEvent
from assistant.audit.services import audit_actor_forget, audit_record


@receiver(user_logged_in, dispatch_uid="audit-user-login")
def _user_logged_in(sender: Any, request: HttpRequest | None, user: Any, **kwargs: Any) -> None:
    audit_record(
        action=AuditEvent.Action.USER_LOGIN,
        actor=user,
        details={"backend": getattr(user, "backend", "") or ""},
        request=request,
    )


@receiver(user_login_failed, dispatch_uid="audit-user-login-failed")
def _user_login_failed(
    sender: Any, credentials: dict[str, Any], request: HttpRequest | None = None, **kwargs: Any
) -> None:
    # Django has already masked the password in ``credentials``; only the name is kept.
    username = str(credentials.get("username") or "")[:150]
    audit_record(
        action=AuditEvent.Action.USER_LOGIN_FAILED,
        details={"username": username, "locked_out": bool(getattr(request, "axes_locked_out", False))},
        request=request,
    )


@receiver(pre_delete, sender=settings.AUTH_USER_MODEL, dispatch_uid="audit-user-deleted")
def _user_deleted(sender: Any, instance: Any, **kwargs: Any) -> None:
    # Every way of deleting a user (the service, the Django admin, a command) passes
    # here, so USER_DELETION_POLICY holds whichever was used.
    audit_actor_forget(user=instance)
