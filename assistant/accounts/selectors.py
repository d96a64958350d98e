"""Read-side permission rules. Every permission check in the product comes through here.

Who may see what
----------------
* **Collections.** A grant gives a group or a single user ``read``, ``write`` (upload
  and delete documents) or ``manage`` (grant access, restrict documents) on one
  collection; each role includes the ones before it. The creator of a collection
  manages it; superusers manage every collection. Anonymous and inactive users read
  nothing.
* **Documents.** A document may be restricted to a set of groups
  (``Document.restricted_to_groups``); an empty set means everyone who may read the
  collection. A restricted document is seen by a reader of its collection only if
  they are in one of its groups, **or** manage the collection (they administer
  access and could lift the restriction anyway, so hiding it from them would protect
  nothing), **or** uploaded it (they had the file). For everyone else it does not
  exist: it is skipped inside the index scan before ranking, and left out of every
  list, count, status page and citation.
* A restriction is set in the transaction that creates the document, and attachments,
  archive members and new versions inherit it, so a restricted text is never
  searchable unrestricted, not even for a moment.
* Nothing is cached: the rules are read from the database for every question, so a
  grant, a revocation or a restriction takes effect on the next question, and the
  index is never rewritten for a permission change.
* An operator at the shell (``user=None``) reads everything; ``manage.py ask --as
  NAME`` asks with exactly one user's permissions.

A refusal never says whether the thing refused exists: a collection or document the
user may not see gets the same answer as one that does not exist.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.contrib.auth.models import AbstractUser, AnonymousUser
from django.core.exceptions import PermissionDenied
from django.db.models import Exists, OuterRef, Q, QuerySet

from assistant.accounts.models import ROLE_ORDER, CollectionGrant, Role
from assistant.accounts.scope import Scope
from ingest.models import Collection, Document, RemovedDocument

AnyUser = AbstractUser | AnonymousUser

NO_SUCH_DOCUMENT = "This document does not exist or you may not see it."


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


def collection_roles(*, user: AnyUser, collection_ids: Iterable[int]) -> dict[int, str]:
    """The user's highest role on each of these collections (which the caller knows they may read)."""
    ids = list(collection_ids)
    roles = dict.fromkeys(ids, Role.READ.value)
    for role in (Role.WRITE, Role.MANAGE):
        for pk in collections_with_role(user=user, role=role).filter(pk__in=ids).values_list("pk", flat=True):
            roles[pk] = role.value
    return roles


def collection_readable(*, user: AnyUser, name_or_id: str | int) -> Collection | None:
    """A collection ``user`` may read, named by its name or its id; None for any other.

    The name is tried first (a collection may be called "2024"), then a number as the id.
    None whether it does not exist or is not theirs to read, so a name reveals nothing.
    """
    readable = collections_with_role(user=user, role=Role.READ)
    key = str(name_or_id).strip()
    found = readable.filter(name=key).first()
    if found is None and key.isdigit():
        found = readable.filter(pk=int(key)).first()
    return found


def collection_grants(*, collection: Collection) -> list[CollectionGrant]:
    """Who holds which role on a collection, groups first (for the portal and the shell)."""
    grants = CollectionGrant.objects.filter(collection=collection).select_related("group", "user")
    return sorted(grants, key=lambda g: (g.group is None, str(g.group or g.user).lower()))


def user_can_create_collections(user: AnyUser) -> bool:
    return bool(user.is_authenticated and (user.is_superuser or user.is_staff))


def documents_hidden_from(*, user: AnyUser, collection_ids: Iterable[int]) -> QuerySet[Document]:
    """Documents of these collections that ``user`` may not see, as one query.

    Restricted documents, except those in a collection the user manages, those
    restricted to a group the user is in, and those the user uploaded. Only the
    document-level rule: whether the user may read the collections at all is the
    caller's question (``read_scope`` asks it).
    """
    ids = list(collection_ids)
    if not ids or (user.is_authenticated and user.is_active and user.is_superuser):
        return Document.objects.none()
    restriction = Document.restricted_to_groups.through.objects.filter(document_id=OuterRef("pk"))
    hidden = Document.objects.filter(Exists(restriction), collection_id__in=ids)
    if user.is_authenticated and user.is_active:
        hidden = (
            hidden.exclude(collection_id__in=collections_with_role(user=user, role=Role.MANAGE).values("pk"))
            .exclude(Exists(restriction.filter(group_id__in=user.groups.values("pk"))))
            .exclude(uploaded_by_id=user.pk)
        )
    return hidden


def documents_visible_to(*, user: AnyUser | None, collection: Collection) -> QuerySet[Document]:
    """The documents of ``collection`` that ``user`` may see (none if they may not read it).

    What every list, count and status shown to a user is built from. ``user=None``
    is an operator at the shell, who sees everything.
    """
    documents = collection.documents.all()
    if user is None:
        return documents
    if not user_can(user=user, collection=collection, role=Role.READ):
        return Document.objects.none()
    return documents.exclude(pk__in=documents_hidden_from(user=user, collection_ids=[collection.pk]).values("pk"))


def document_for(*, user: AnyUser | None, document_id: int, role: Role = Role.READ) -> Document:
    """The document, if ``user`` may see it and holds ``role`` on its collection.

    Raises ``PermissionDenied`` with the same message whether the document does not
    exist or is not theirs to see, so an id reveals nothing.
    """
    document = Document.objects.filter(pk=document_id).select_related("collection").first()
    if document is None:
        raise PermissionDenied(NO_SUCH_DOCUMENT)
    if user is None:
        return document
    if not user_can(user=user, collection=document.collection, role=role):
        raise PermissionDenied(NO_SUCH_DOCUMENT)
    if documents_hidden_from(user=user, collection_ids=[document.collection_id]).filter(pk=document.pk).exists():
        raise PermissionDenied(NO_SUCH_DOCUMENT)
    return document


def read_scope(*, user: AnyUser | None, collections: QuerySet[Collection] | list[Collection]) -> Scope:
    """The retrieval scope for ``user`` over ``collections``: only what they may read.

    Collections the user may not read are left out (callers that must refuse them
    check first); restricted documents they may not see are listed in
    ``hidden_document_ids``, which every retriever skips inside its own search.
    ``user=None`` is an operator at the shell, who reads everything.
    """
    ids = [c.pk for c in collections]
    if user is None:
        return Scope.of(ids)
    readable = set(collections_readable_by(user).filter(pk__in=ids).values_list("pk", flat=True))
    ids = [pk for pk in ids if pk in readable]
    hidden = documents_hidden_from(user=user, collection_ids=ids).values_list("pk", flat=True) if ids else []
    return Scope.of(ids, list(hidden))


def cited_documents_hidden_from(
    *, user: AnyUser | None, collection: Collection, document_ids: Iterable[object]
) -> set[int]:
    """Which of these documents, cited by an old answer, ``user`` may not see now.

    A document that still exists follows the rules above. One that is gone follows
    its record (``ingest.models.RemovedDocument``): a replaced document is hidden
    from whoever may not see the version that replaced it (which kept its
    restriction), a deleted one from whoever could not see it when it was deleted.
    So an answer withheld because of a restriction stays withheld when the document
    is replaced or deleted. A document gone without a record (removed before records
    were kept) is treated as it was before: not hidden.
    """
    wanted = {int(d) for d in document_ids if isinstance(d, int)}
    if user is None or not wanted:
        return set()
    if user.is_authenticated and user.is_active and user.is_superuser:
        return set()
    hidden_now = set(documents_hidden_from(user=user, collection_ids=[collection.pk]).values_list("pk", flat=True))
    existing = set(Document.objects.filter(pk__in=wanted, collection=collection).values_list("pk", flat=True))
    hidden = wanted & existing & hidden_now
    manages = user_can(user=user, collection=collection, role=Role.MANAGE)
    groups = set(user.groups.values_list("pk", flat=True)) if user.is_authenticated else set()
    for document_id in wanted - existing:
        if not manages and _removed_hidden(document_id, hidden_now=hidden_now, groups=groups, user=user):
            hidden.add(document_id)
    return hidden


def _removed_hidden(document_id: int, *, hidden_now: set[int], groups: set[int], user: AnyUser) -> bool:
    seen: set[int] = set()
    current = document_id
    while current not in seen:
        seen.add(current)
        if current != document_id and Document.objects.filter(pk=current).exists():
            return current in hidden_now  # the version that replaced it, with its restriction
        removed = RemovedDocument.objects.filter(document_id=current).first()
        if removed is None:
            return current != document_id  # a chain that ends nowhere: hide; no record at all: as before
        if removed.replaced_by_id is None:
            restricted = set(removed.restricted_to_groups.values_list("pk", flat=True))
            uploader = user.pk is not None and removed.uploaded_by_id == user.pk
            return bool(restricted) and not (restricted & groups) and not uploader
        current = removed.replaced_by_id
    return True
