"""``manage.py connector add|list|sync|edit|pause|resume|remove|key``: connectors from the shell.

connector add --collection NAME --type folder --name CONNECTOR [--every MINUTES]
              [--path P] [--include GLOB]... [--exclude GLOB]... [--map GLOB=GROUP[,GROUP]]...
              [--secret-env VAR | --secret-prompt]
connector add ... --type web --url URL... | --sitemap URL [--depth N] [--max-pages N] [--timeout S]
              [--username USER]  (the password or bearer token: --secret-env / --secret-prompt)
connector add ... --type webdav --url FOLDER_URL --username USER --secret-env VAR [--timeout S]
connector add ... --type imap --host H [--port N] [--security imaps|starttls] --user U [--folder F]...
connector add ... --type smb --host H [--port N] --share S [--path FOLDER] --user U [--encrypt]
              [--permissions map|acl] [--acl-map SID=GROUP[,GROUP]]...
connector add ... --type confluence --url URL --space KEY... [--deployment cloud|datacenter]
              [--email ADDRESS] [--no-attachments] [--map CONFLUENCE_GROUP=GROUP[,GROUP]]... --secret-env VAR
connector add ... --type sharepoint --tenant T --drive ID --client-id ID [--site ID]
              [--map ENTRA_GROUP=GROUP[,GROUP]]... --secret-env VAR
connector list [--json]
connector sync CONNECTOR [--wait [--inline]] [--dry-run] [--json]
connector edit CONNECTOR [--every MINUTES] [--include ...] [--exclude ...] [--map ...]
connector pause|resume CONNECTOR
connector remove CONNECTOR [--delete-documents]
connector key            (prints a new CONNECTOR_SECRET_KEY)

Secrets never come from the command line (it is visible to every user of the
machine and kept in shell histories): from an environment variable or a prompt.
"""

from __future__ import annotations

import getpass
import json
import os
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db.models import Q

from assistant.connectors import selectors, services, sync
from assistant.connectors.models import Connector
from assistant.connectors.secrets import CredentialsUnavailable, new_key
from assistant.connectors.sources import PLANNED_TYPES, SOURCE_TYPES
from assistant.connectors.sources.folder import mapping_parse
from ingest import pipeline
from ingest.models import FINISHED, Collection, Document


def _connector(name: str) -> Connector:
    found = selectors.connector_named(name)
    if found is None:
        raise CommandError(f"No connector named '{name}' (see `manage.py connector list`).")
    return found


def _mapping(entries: list[str]) -> list[dict[str, Any]]:
    try:
        return mapping_parse(entries)
    except ValueError as exc:
        raise CommandError(f"--map: {exc}") from None


def _type_settings(options: dict[str, Any], *, partial: bool) -> dict[str, Any]:
    found: dict[str, Any] = {}
    if options.get("path") is not None or not partial:
        found["path"] = options.get("path") or ""
    for key in ("include", "exclude"):
        if options.get(key) or not partial:
            found[key] = options.get(key) or []
    if options.get("map") or not partial:
        found["groups"] = _mapping(options.get("map") or [])
    found.update(_http_settings(options))
    for option, key in _CLOUD_SETTINGS.items():
        if options.get(option):
            found[key] = options[option]
    # imap and smb: a server, its account, and where to read on it.
    for key in ("host", "port", "user", "share", "security", "cafile", "folders"):
        if options.get(key) is not None:
            found[key] = options[key]
    for flag in ("allow_plain", "encrypt"):
        if options.get(flag):
            found[flag] = True
    if options.get("no_attachments"):
        found["attachments"] = False
    if options.get("permissions"):
        found["permissions"] = options["permissions"]
    if options.get("acl_map"):
        try:
            found["acl_groups"] = mapping_parse(options["acl_map"])
        except ValueError as exc:
            raise CommandError(f"--acl-map: {exc}") from None
    return found


def _http_settings(options: dict[str, Any]) -> dict[str, Any]:
    """web and webdav: what was given (``--url`` is a site's start pages, or the WebDAV folder)."""
    found: dict[str, Any] = {}
    if options.get("url"):
        found["start_urls"] = options["url"]
        found["url"] = options["url"][0]
    for option, key in (
        ("sitemap", "sitemap"), ("depth", "depth"), ("max_pages", "max_pages"), ("timeout", "timeout_s"),
        ("username", "username"),
    ):  # fmt: skip
        if options.get(option) is not None:
            found[key] = options[option]
    return found


def _option(parser: Any, *names: str, **kwargs: Any) -> None:
    """Add an option unless another source type already added it (several share --url, --username)."""
    if not any(name in parser._option_string_actions for name in names):
        parser.add_argument(*names, **kwargs)


# Options of the cloud sources (confluence, sharepoint) -> their settings' keys (--url: see _http_settings).
_CLOUD_SETTINGS = {
    "space": "spaces", "deployment": "deployment", "email": "email", "tenant": "tenant",
    "drive": "drive_id", "site": "site_id", "client_id": "client_id", "graph_url": "graph_url",
    "login_url": "login_url",
}  # fmt: skip


def _cloud_arguments(sub: Any) -> None:
    sub.add_argument("--space", action="append", metavar="KEY", help="confluence: a space key to read (repeatable).")
    sub.add_argument("--deployment", choices=["cloud", "datacenter"], help="confluence: cloud (default) or datacenter.")
    sub.add_argument("--email", help="confluence cloud: the account the API token (the secret) belongs to.")
    sub.add_argument("--no-attachments", action="store_true", help="confluence: the pages only, not their files.")
    sub.add_argument("--tenant", help="sharepoint: the directory (tenant) id or domain.")
    sub.add_argument("--drive", help="sharepoint: the document library's drive id.")
    sub.add_argument("--site", help="sharepoint: the site id (for the record).")
    sub.add_argument(
        "--client-id", help="sharepoint: the app registration's client id (the secret: its client secret)."
    )
    sub.add_argument("--graph-url", help="sharepoint: Microsoft Graph's address (default: the public cloud).")
    sub.add_argument("--login-url", help="sharepoint: the login endpoint's address (default: the public cloud).")


class Command(BaseCommand):
    help = "Add, list, sync, pause, resume and remove connectors (sources that feed a collection)."

    def add_arguments(self, parser: Any) -> None:
        actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
        add = actions.add_parser("add", help="Add a connector to a collection.")
        add.add_argument("--collection", required=True)
        add.add_argument("--type", required=True, choices=[*SOURCE_TYPES, *PLANNED_TYPES], dest="kind")
        add.add_argument("--name", required=True)
        edit = actions.add_parser("edit", help="Change a connector's schedule, globs or group mapping.")
        edit.add_argument("connector")
        for sub in (add, edit):
            sub.add_argument("--every", type=int, metavar="MINUTES", help="Sync every MINUTES (0: only when asked).")
            sub.add_argument("--path", help="folder: the mounted folder to read; smb: a folder inside the share.")
            sub.add_argument("--host", help="imap, smb: the server's name or address.")
            sub.add_argument("--port", type=int, help="imap (993 or 143), smb (445): another port.")
            sub.add_argument("--user", help="imap: the mailbox's login; smb: the account (DOMAIN\\user).")
            sub.add_argument("--share", help="smb: the share's name.")
            sub.add_argument("--encrypt", action="store_true", help="smb: require SMB3 encryption.")
            sub.add_argument(
                "--permissions", choices=["map", "acl"],
                help="smb: who reads a file: the --map globs (map, the default) or the file's own ACL (acl).",
            )  # fmt: skip
            sub.add_argument(
                "--acl-map", action="append", metavar="SID=GROUPS",
                help="smb with --permissions acl: the product groups a SID in the files' ACLs stands for "
                "(repeatable; Everyone and Authenticated Users mean every reader unless mapped).",
            )  # fmt: skip
            sub.add_argument("--security", choices=["imaps", "starttls", "plain"], help="imap: TLS (default imaps).")
            sub.add_argument("--allow-plain", action="store_true", help="imap: allow --security plain (loopback only).")
            sub.add_argument("--cafile", help="imap: CA bundle for a server certificate a private CA signed.")
            sub.add_argument(
                "--folder", action="append", dest="folders", metavar="FOLDER",
                help="imap: a mail folder to read (repeatable; default INBOX; --include/--exclude globs add/remove).",
            )  # fmt: skip
            sub.add_argument("--include", action="append", metavar="GLOB", help="Only paths matching (repeatable).")
            sub.add_argument("--exclude", action="append", metavar="GLOB", help="Skip paths matching (repeatable).")
            sub.add_argument(
                "--map", action="append", metavar="GLOB=GROUPS",
                help="Who reads files matching GLOB: GROUP[,GROUP] or * for every reader (first match wins; "
                "unmatched files: the collection's managers only). confluence, sharepoint: SOURCE_GROUP=GROUPS.",
            )  # fmt: skip
            _option(sub, "--url", action="append", metavar="URL",
                    help="web: a start page (repeatable); webdav: the folder's URL; confluence: the site.")  # fmt: skip
            _option(sub, "--sitemap", metavar="URL", help="web: a sitemap whose pages are start pages.")
            _option(sub, "--depth", type=int, metavar="N", help="web: link hops followed from a start page (2).")
            _option(sub, "--max-pages", type=int, metavar="N", help="web: items listed at most (1000).")
            _option(sub, "--timeout", type=float, metavar="SECONDS", help="web, webdav: per request (20).")
            _option(sub, "--username", help="web, webdav: the login (the password is the secret).")
            _cloud_arguments(sub)
            sub.add_argument("--secret-env", metavar="VAR", help="Read the password or token from this variable.")
            sub.add_argument("--secret-prompt", action="store_true", help="Ask for the password or token.")
        listing = actions.add_parser("list", help="The connectors and their state.")
        listing.add_argument("--json", action="store_true")
        run = actions.add_parser("sync", help="Sync a connector now.")
        run.add_argument("connector")
        run.add_argument("--wait", action="store_true", help="Sync here and wait until its documents are done.")
        run.add_argument("--inline", action="store_true", help="With --wait: ingest here too (no worker).")
        run.add_argument("--dry-run", action="store_true", help="List what would change; change nothing.")
        run.add_argument(
            "--json", action="store_true",
            help="One JSON object per item, then a summary; without --wait or --dry-run, what was queued.",
        )  # fmt: skip
        for verb in ("pause", "resume"):
            actions.add_parser(verb, help=f"{verb.capitalize()} scheduled syncs.").add_argument("connector")
        remove = actions.add_parser("remove", help="Remove a connector (its documents stay unless asked).")
        remove.add_argument("connector")
        remove.add_argument("--delete-documents", action="store_true")
        actions.add_parser("key", help="Print a new key for CONNECTOR_SECRET_KEY.")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            getattr(self, f"_{options['action']}")(options)
        except (services.ConnectorInvalid, sync.SyncRefused, sync.SyncBusy, CredentialsUnavailable) as exc:
            raise CommandError(str(exc)) from None

    def _secret(self, options: dict[str, Any]) -> dict[str, str] | None:
        if options.get("secret_env"):
            value = os.environ.get(options["secret_env"], "")
            if not value:
                raise CommandError(f"The environment variable {options['secret_env']} is empty or not set.")
            return {"secret": value}
        if options.get("secret_prompt"):
            return {"secret": getpass.getpass("Password or token: ")}
        return None

    def _add(self, options: dict[str, Any]) -> None:
        collection = Collection.objects.filter(name=options["collection"]).first()
        if collection is None:
            raise CommandError(f"No collection named '{options['collection']}'.")
        connector = services.connector_add(
            collection=collection, kind=options["kind"], name=options["name"],
            settings=_type_settings(options, partial=False), credentials=self._secret(options),
            every_minutes=options["every"] or 0,
        )  # fmt: skip
        when = f"every {connector.every_minutes} minutes" if connector.every_minutes else "when asked"
        self.stdout.write(
            f"Added connector '{connector.name}' ({connector.kind}) to '{collection.name}'; syncs {when}."
        )

    def _edit(self, options: dict[str, Any]) -> None:
        connector = _connector(options["connector"])
        services.connector_change(
            connector=connector, settings=_type_settings(options, partial=True) or None,
            credentials=self._secret(options), every_minutes=options["every"],
        )  # fmt: skip
        self.stdout.write(f"Changed connector '{connector.name}'; the next sync applies it.")

    def _list(self, options: dict[str, Any]) -> None:
        described = [selectors.connector_described(c) for c in Connector.objects.select_related("collection")]
        if options["json"]:
            for row in described:
                self.stdout.write(json.dumps(row))
            return
        if not described:
            self.stdout.write("No connectors (add one with `manage.py connector add`).")
        for row in described:
            flags = " paused" if row["paused"] else ""
            every = f"every {row['every_minutes']} min" if row["every_minutes"] else "on demand"
            self.stdout.write(
                f"{row['name']}  [{row['type']}] -> {row['collection']}  {every}{flags}  {row['state']}  "
                f"last: {row['finished_at'] or 'never'}  seen {row['seen']} fetched {row['fetched']} "
                f"failed {row['failed']}{'  error: ' + row['last_error'] if row['last_error'] else ''}"
            )

    def _sync(self, options: dict[str, Any]) -> None:
        connector = _connector(options["connector"])
        as_json = options["json"]
        if not options["wait"] and not options["dry_run"]:
            task_id = services.connector_sync_request(connector=connector)
            if as_json:
                queued = {"connector": connector.name, "queued": bool(task_id), "task_id": task_id}
                self.stdout.write(json.dumps(queued))
            elif task_id:
                self.stdout.write(f"Queued a sync of '{connector.name}' (task {task_id}).")
            else:
                self.stdout.write(f"A sync of '{connector.name}' is already queued or running.")
            return

        def show(item: sync.ItemResult) -> None:
            if as_json:
                self.stdout.write(json.dumps(item.as_dict()))
            elif item.action != "unchanged":
                self.stdout.write(f"{item.action:<11} {item.source_id}{'  ' + item.error if item.error else ''}")

        report = sync.connector_sync(
            connector=connector, dry_run=options["dry_run"], enqueue=not options["inline"], on_item=show
        )
        if report.queued and options["wait"]:
            if options["inline"]:
                pipeline.documents_process_here(document_ids=report.queued, together=True)
            else:
                self._wait_for(report.queued)
        summary = report.summary()
        if report.queued:
            done = Document.objects.filter(Q(pk__in=report.queued) | Q(parent_id__in=report.queued))
            summary["documents_failed"] = done.filter(status=Document.Status.FAILED).count()
        if as_json:
            self.stdout.write(json.dumps({"summary": summary}))
        else:
            counts = ", ".join(f"{summary[a]} {a}" for a in sync.ACTIONS if summary[a])
            self.stdout.write(
                f"{'Dry run: ' if report.dry_run else ''}{report.seen} items seen: {counts or 'nothing'}."
            )
        if report.error:
            raise CommandError(report.error)

    def _wait_for(self, ids: list[int]) -> None:
        while Document.objects.filter(pk__in=ids).exclude(status__in=FINISHED).exists():
            time.sleep(1)

    def _pause(self, options: dict[str, Any]) -> None:
        connector = services.connector_change(connector=_connector(options["connector"]), paused=True)
        self.stdout.write(f"Paused '{connector.name}'.")

    def _resume(self, options: dict[str, Any]) -> None:
        connector = services.connector_change(connector=_connector(options["connector"]), paused=False)
        self.stdout.write(f"Resumed '{connector.name}'.")

    def _remove(self, options: dict[str, Any]) -> None:
        connector = _connector(options["connector"])
        name = connector.name
        deleted = services.connector_remove(connector=connector, delete_documents=options["delete_documents"])
        kept = "" if options["delete_documents"] else " (its documents stay in the collection)"
        self.stdout.write(f"Removed '{name}'{kept}; {deleted} document(s) deleted.")

    def _key(self, options: dict[str, Any]) -> None:
        self.stdout.write(new_key())
