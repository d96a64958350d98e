"""``manage.py collection grant|revoke|access|restrict COLLECTION ...``: who may see a collection.

collection grant COLLECTION (--group GROUP | --user USER) --role read|write|manage
collection revoke COLLECTION (--group GROUP | --user USER)
collection access COLLECTION
collection restrict COLLECTION DOCUMENT [--group GROUP]...   (no group: lift the restriction)
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from assistant.accounts.management.grantees import grantee_describe, grantee_from_options, group_named
from assistant.accounts.models import Role
from assistant.accounts.selectors import collection_grants
from assistant.accounts.services import collection_grant, collection_revoke
from ingest.models import Collection, Document
from ingest.services import document_restrict


def _collection(name: str) -> Collection:
    collection = Collection.objects.filter(name=name).first()
    if collection is None:
        raise CommandError(f"No collection named '{name}'.")
    return collection


class Command(BaseCommand):
    help = "Grant, revoke and list access to a collection; restrict one of its documents to groups."

    def add_arguments(self, parser: Any) -> None:
        actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
        grant = actions.add_parser("grant", help="Give a group or a user a role on the collection.")
        revoke = actions.add_parser("revoke", help="Take a group's or a user's access away.")
        for sub in (grant, revoke):
            sub.add_argument("collection")
            who = sub.add_mutually_exclusive_group(required=True)
            who.add_argument("--group")
            who.add_argument("--user")
        grant.add_argument("--role", required=True, choices=Role.values)
        access = actions.add_parser("access", help="List who holds which role.")
        access.add_argument("collection")
        restrict = actions.add_parser(
            "restrict", help="Restrict a document to groups (and what came out of it); no --group lifts it."
        )
        restrict.add_argument("collection")
        restrict.add_argument("document", help="The document's name, or #ID.")
        restrict.add_argument("--group", dest="groups", action="append", default=[], metavar="GROUP")

    def handle(self, *args: Any, **options: Any) -> None:
        getattr(self, f"_{options['action']}")(options)

    def _grant(self, options: dict[str, Any]) -> None:
        collection = _collection(options["collection"])
        grantee = grantee_from_options(options)
        change = collection_grant(collection=collection, role=options["role"], **grantee)
        who = grantee_describe(grantee)
        if change.previous_role is None:
            self.stdout.write(f"Granted {who} {options['role']} on '{collection.name}'.")
        elif change.previous_role == options["role"]:
            self.stdout.write(f"{who.capitalize()} already had {options['role']} on '{collection.name}'.")
        else:
            self.stdout.write(f"Changed {who} from {change.previous_role} to {options['role']} on '{collection.name}'.")

    def _revoke(self, options: dict[str, Any]) -> None:
        collection = _collection(options["collection"])
        grantee = grantee_from_options(options)
        who = grantee_describe(grantee)
        if collection_revoke(collection=collection, **grantee):
            self.stdout.write(f"Revoked the access of {who} to '{collection.name}'.")
        else:
            self.stdout.write(f"{who.capitalize()} had no grant on '{collection.name}'; nothing changed.")

    def _access(self, options: dict[str, Any]) -> None:
        collection = _collection(options["collection"])
        creator = collection.created_by.username if collection.created_by else "-"
        self.stdout.write(f"{collection.name}: created by {creator} (manages it); superusers manage every collection.")
        for grant in collection_grants(collection=collection):
            who = f"group {grant.group.name}" if grant.group else f"user {grant.user.username}"  # type: ignore[union-attr]
            self.stdout.write(f"  {grant.role:<6}  {who}")
        restricted = (
            Document.objects.filter(collection=collection, restricted_to_groups__isnull=False)
            .prefetch_related("restricted_to_groups")
            .distinct()
        )
        for document in restricted:
            groups = ", ".join(sorted(g.name for g in document.restricted_to_groups.all()))
            self.stdout.write(f"  restricted: #{document.pk} {document.name} -> {groups}")

    def _restrict(self, options: dict[str, Any]) -> None:
        collection = _collection(options["collection"])
        groups = [group_named(name) for name in dict.fromkeys(options["groups"])]
        key = options["document"]
        documents = Document.objects.filter(collection=collection)
        if key.startswith("#") and key[1:].isdigit():
            matches = list(documents.filter(pk=int(key[1:])))
        else:
            matches = list(documents.filter(name=key))
        if not matches:
            raise CommandError(f"No document {key} in '{collection.name}'.")
        if len(matches) > 1:
            ids = ", ".join(f"#{d.pk}" for d in matches)
            raise CommandError(f"{len(matches)} documents are named '{key}' ({ids}); name one by its #ID.")
        changed = document_restrict(document=matches[0], groups=groups)
        names = ", ".join(f"'{g.name}'" for g in groups)
        what = f"restricted to {names}" if groups else "open to every reader of the collection"
        extra = f" (with {len(changed) - 1} document(s) found inside it or newer versions)" if len(changed) > 1 else ""
        self.stdout.write(f"'{matches[0].name}' is now {what}{extra}.")
