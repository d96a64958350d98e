"""What the top bar links to: the dashboard only for those it shows something to."""

from __future__ import annotations

from typing import Any

from django import template

from assistant.portal.metrics import dashboard_allowed as _allowed

register = template.Library()


@register.simple_tag(takes_context=True)
def dashboard_allowed(context: dict[str, Any]) -> bool:
    """Superusers and collection managers (one query, only for a signed-in user)."""
    user = context.get("user")
    return bool(user is not None and user.is_authenticated and _allowed(user))
