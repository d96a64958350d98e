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
from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractUser, AnonymousUser
from django.core.exceptions import PermissionDenied
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.utils.translation import gettext

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


def user_can_manage_people(user: AnyUser) -> bool:
    """Who runs the People pages (users, groups, memberships): superusers, and staff
    members granted Django's "Can change user" (``auth.change_user``).

    One permission for users and groups alike: putting someone in a group is a change
    of that user. Only a superuser changes a superuser (``accounts.services``).
    """
    if not user.is_authenticated or not user.is_active:
        return False
    return bool(user.is_superuser or (user.is_staff and user.has_perm("auth.change_user")))


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
    through = Document.restricted_to_groups.through.objects
    restriction = through.filter(document_id=OuterRef("pk"))
    # Read from the restrictions, not from every document: a collection of 100,000
    # documents with a few restricted ones costs a few index probes, not a scan.
    restricted = through.filter(document__collection_id__in=ids).values("document_id")
    hidden = Document.objects.filter(pk__in=restricted)
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


# --- People: who reads what, as an administrator sees it -----------------------------

HIDDEN_LISTED = 50  # hidden documents named per collection on a user's page


@dataclass(frozen=True)
class CollectionAccess:
    """What one user may read in one collection (``user_read_overview``)."""

    collection: Collection
    role: str
    via: list[str]  # where the role comes from: "superuser", "creator", "own grant", a group's name
    readable: int  # documents they may read (of those the viewer may see)
    hidden: list[Document]  # documents restricted away from them (of those the viewer may see)
    hidden_more: int  # hidden documents past the ones listed

    @property
    def role_label(self) -> str:
        """The role as people read it, in their language."""
        return str(Role(self.role).label)


@dataclass(frozen=True)
class ReadOverview:
    collections: list[CollectionAccess]
    not_shown: int  # collections they read that the viewer may not see: counted, never named


def users_search(*, search: str = "") -> QuerySet[AbstractUser]:
    """Users whose name or e-mail contains ``search``, by user name, with their groups."""
    users = get_user_model().objects.order_by("username").prefetch_related("groups")
    search = search.strip()
    if search:
        users = users.filter(
            Q(username__icontains=search)
            | Q(email__icontains=search)
            | Q(first_name__icontains=search)
            | Q(last_name__icontains=search)
        )
    return users


def user_read_overview(*, user: AbstractUser, viewer: AnyUser) -> ReadOverview:
    """What ``user`` may read, through the rules above, as ``viewer`` may be shown it.

    Per collection ``user`` reads: their role, where it comes from, how many documents
    they read and which restricted documents they do not. Only what ``viewer`` may
    see is named: collections the viewer may not read are counted, and documents
    hidden from the viewer are neither named nor counted.
    """
    readable = list(collections_readable_by(user).order_by("name"))
    viewer_reads = set(
        collections_readable_by(viewer).filter(pk__in=[c.pk for c in readable]).values_list("pk", flat=True)
    )
    shown = [c for c in readable if c.pk in viewer_reads]
    ids = [c.pk for c in shown]
    roles = collection_roles(user=user, collection_ids=ids)
    via: dict[int, list[str]] = {pk: [] for pk in ids}
    grants = CollectionGrant.objects.filter(collection_id__in=ids).filter(
        Q(user_id=user.pk) | Q(group__in=user.groups.all())
    )
    for grant in grants.select_related("group").order_by("group__name"):
        holder = grant.group.name if grant.group else gettext("own grant")
        via[grant.collection_id].append(f"{holder} ({Role(grant.role).label})")
    hidden_from_viewer = documents_hidden_from(user=viewer, collection_ids=ids).values("pk")
    hidden_from_user = documents_hidden_from(user=user, collection_ids=ids).exclude(pk__in=hidden_from_viewer)
    overview = []
    for collection in shown:
        sources = via[collection.pk]
        if collection.created_by_id == user.pk:
            sources.insert(0, gettext("creator"))
        if user.is_superuser:
            sources.insert(0, gettext("superuser"))
        hidden = hidden_from_user.filter(collection=collection).order_by("name")
        total_hidden = hidden.count()
        listed = list(hidden[:HIDDEN_LISTED])
        readable_count = (
            documents_visible_to(user=user, collection=collection).exclude(pk__in=hidden_from_viewer).count()
        )
        overview.append(
            CollectionAccess(
                collection=collection,
                role=roles[collection.pk],
                via=sources,
                readable=readable_count,
                hidden=listed,
                hidden_more=total_hidden - len(listed),
            )
        )
    return ReadOverview(collections=overview, not_shown=len(readable) - len(shown))


def collection_readers(*, collection: Collection) -> QuerySet[AbstractUser]:
    """The active users who may read ``collection``, by username (``collections_readable_by`` turned around).

    Superusers, its creator, users granted a role on it and members of groups granted one.
    """
    grants = CollectionGrant.objects.filter(collection=collection)
    readers = Q(is_superuser=True) | Q(pk=collection.created_by_id)
    readers |= Q(pk__in=grants.filter(user__isnull=False).values("user_id"))
    readers |= Q(groups__in=grants.filter(group__isnull=False).values("group_id"))
    users: QuerySet[AbstractUser] = get_user_model().objects.filter(readers, is_active=True)
    # ``groups__in`` joins: a member of two granted groups would come twice.
    return users.distinct().order_by("username")
