"""Who a shell command grants to: ``--user NAME`` or ``--group NAME``, looked up, never created.

Shared by ``manage.py collection grant|revoke`` and ``manage.py audit grant|revoke``.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import CommandError

GROUP_HINT = "create it with `manage.py user add NAME --group GROUP`"


def group_named(name: str) -> Group:
    # Not created here: a misspelt name would silently grant or restrict nothing.
    group = Group.objects.filter(name=name).first()
    if group is None:
        raise CommandError(f"No group named '{name}'; {GROUP_HINT}.")
    return group


def grantee_from_options(options: dict[str, Any]) -> dict[str, Any]:
    """``{"group": Group}`` or ``{"user": User}`` from the command's ``--group``/``--user``."""
    if options["group"]:
        return {"group": group_named(options["group"])}
    user = get_user_model().objects.filter(username=options["user"]).first()
    if user is None:
        raise CommandError(f"No user named '{options['user']}'.")
    return {"user": user}


def grantee_describe(grantee: dict[str, Any]) -> str:
    return f"group '{grantee['group'].name}'" if "group" in grantee else f"user '{grantee['user'].username}'"
