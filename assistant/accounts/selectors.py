"""Read-side permission rules. Every permission check in the product comes through here."""

from __future__ import annotations

from django.contrib.auth.models import AbstractUser, AnonymousUser
from django.db.models import Q, QuerySet

from assistant.accounts.models import ROLE_ORDER, CollectionGrant, Role
from assistant.chat.retrieval import Scope
from ingest.models import Collection

AnyUser = AbstractUser | AnonymousUser


def _grants_for(user: AnyUser) -> QuerySet[CollectionGrant]:
    return CollectionGrant.objects.filter(Q(user_id=user.pk) | Q(group__in=user.groups.all()))


def collections_with_role(*, user: AnyUser, role: Role) -> QuerySet[Collection]:
    """Collections on which ``user`` holds at least ``role``."""
    if not user.is_authenticated or not user.is_active:
        return Collection.objects.none()
    if user.is_superuser:
        return Collection.objects.all()
    enough = [r for r, rank in ROLE_ORDER.items() if rank >= ROLE_ORDER[role]]
    granted = _grants_for(user).filter(role__in=enough).values("collection_id")
    return Collection.objects.filter(Q(created_by_id=user.pk) | Q(id__in=granted))


def collections_readable_by(user: AnyUser) -> QuerySet[Collection]:
    return collections_with_role(user=user, role=Role.READ)


def user_can(*, user: AnyUser, collection: Collection, role: Role) -> bool:
    return collections_with_role(user=user, role=role).filter(pk=collection.pk).exists()


def user_can_create_collections(user: AnyUser) -> bool:
    return bool(user.is_authenticated and (user.is_superuser or user.is_staff))


def read_scope(*, user: AnyUser | None, collections: QuerySet[Collection] | list[Collection]) -> Scope:
    """The retrieval scope for ``user`` over ``collections``: only those they may read.

    ``user=None`` is an operator at the shell, who reads everything. Collections the
    user may not read are left out (callers that must refuse them check first).
    """
    ids = [c.pk for c in collections]
    if user is not None:
        readable = set(collections_readable_by(user).filter(pk__in=ids).values_list("pk", flat=True))
        ids = [pk for pk in ids if pk in readable]
    return Scope.of(ids)
