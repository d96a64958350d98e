"""Users and groups as a SCIM client (Entra ID, Okta) provisions them.

The client owns what it created (``DirectoryAccount`` / ``DirectoryGroup`` with
source "scim") and sees nothing else: a local account of the same user name is not
found by its filter and cannot be created over (409 uniqueness). Disabling or
deleting a user takes their access away at once (``account_deprovision``); every
change is audited with source "scim".
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import IntegrityError, transaction
from django.db.models import QuerySet
from django.utils import timezone

from assistant.directory.models import DirectoryAccount, DirectoryGroup, Source
from assistant.directory.scim.protocol import GROUP, USER, ScimError, boolean, member_path_value
from assistant.directory.services import account_deprovision

SOURCE = Source.SCIM


def _audit(action: str, target: Any, **details: Any) -> None:
    from assistant.audit.services import audit_record

    audit_record(action=action, target=target, details={"source": SOURCE, **details})


# --- Reading -------------------------------------------------------------------------


def scim_users() -> QuerySet[Any]:
    return (
        get_user_model()
        .objects.filter(directory_account__source=SOURCE, directory_account__removed_at=None)
        .select_related("directory_account")
        .order_by("pk")
    )


def scim_groups() -> QuerySet[Group]:
    return Group.objects.filter(directory_group__source=SOURCE).select_related("directory_group").order_by("pk")


def scim_user(user_id: str) -> Any:
    user = scim_users().filter(pk=int(user_id)).first() if user_id.isdigit() else None
    if user is None:
        raise ScimError(404, f"User {user_id} not found.")
    return user


def scim_group(group_id: str) -> Group:
    group = scim_groups().filter(pk=int(group_id)).first() if group_id.isdigit() else None
    if group is None:
        raise ScimError(404, f"Group {group_id} not found.")
    return group


def _meta(kind: str, location: str, created: Any, modified: Any) -> dict[str, Any]:
    return {
        "resourceType": kind, "location": location,
        "created": created.isoformat() if created else None,
        "lastModified": (modified or created).isoformat() if (modified or created) else None,
    }  # fmt: skip


def user_resource(user: Any, base: str) -> dict[str, Any]:
    account = user.directory_account
    groups = scim_groups().filter(user=user)
    kept = account.attributes or {}
    resource: dict[str, Any] = {
        "schemas": [USER],
        "id": str(user.pk),
        "userName": user.username,
        "active": user.is_active,
        "groups": [{"value": str(g.pk), "display": g.name, "$ref": f"{base}/Groups/{g.pk}"} for g in groups],
        "meta": _meta("User", f"{base}/Users/{user.pk}", account.created_at, account.last_synced_at),
    }
    # As the client sent them, else from the account (a user the client never described).
    display = kept.get("displayName")
    names = {"givenName": user.first_name, "familyName": user.last_name}
    name = kept.get("name") or ({k: v for k, v in names.items() if v} or None)
    emails = kept.get("emails") or ([{"value": user.email, "type": "work", "primary": True}] if user.email else None)
    resource.update({k: v for k, v in (("displayName", display), ("name", name), ("emails", emails)) if v})
    if account.external_id:
        resource["externalId"] = account.external_id
    return resource


def group_resource(group: Group, base: str, *, members: bool = True) -> dict[str, Any]:
    owner = group.directory_group
    resource: dict[str, Any] = {
        "schemas": [GROUP],
        "id": str(group.pk),
        "displayName": group.name,
        "meta": _meta("Group", f"{base}/Groups/{group.pk}", owner.created_at, owner.last_synced_at),
    }
    if members:
        resource["members"] = [
            {"value": str(u.pk), "display": u.username, "$ref": f"{base}/Users/{u.pk}"}
            for u in scim_users().filter(groups=group)
        ]
    if owner.external_id:
        resource["externalId"] = owner.external_id
    return resource


# --- Users ---------------------------------------------------------------------------


def _user_changes(data: dict[str, Any]) -> dict[str, Any]:
    """What a SCIM User body (or a PATCH value) says, in our terms; absent keys are absent.

    ``attributes`` holds what the client sent for displayName, name and emails, to
    give back as sent (None: remove it).
    """
    changes: dict[str, Any] = {}
    kept: dict[str, Any] = {}
    for key, value in data.items():
        lowered = key.lower().removeprefix(USER.lower() + ":")
        if lowered == "username":
            changes["username"] = str(value or "").strip()
        elif lowered == "externalid":
            changes["external_id"] = str(value or "")[:255]
        elif lowered == "active":
            changes["active"] = boolean(value)
        elif lowered == "displayname":
            kept["displayName"] = value or None
        elif lowered == "name":
            name = value if isinstance(value, dict) else {}
            kept["name"] = name or None
            changes["first_name"] = str(name.get("givenName") or "")[:150]
            changes["last_name"] = str(name.get("familyName") or "")[:150]
        elif lowered in ("name.givenname", "name.familyname"):
            kept.setdefault("name.", {})[key.split(".", 1)[1]] = value
            changes["first_name" if lowered.endswith("givenname") else "last_name"] = str(value or "")[:150]
        elif lowered == "emails":
            emails = [e for e in value if isinstance(e, dict) and e.get("value")] if isinstance(value, list) else []
            primary = next((e for e in emails if e.get("primary") in (True, "true", "True")), None)
            primary = primary or (emails[0] if emails else None)
            changes["email"] = str(primary["value"])[:254] if primary else ""
            kept["emails"] = emails or None
        elif (lowered.startswith("emails[") and lowered.endswith(".value")) or lowered == "emails.value":
            changes["email"] = str(value or "")[:254]
            kept["emails"] = [{"value": value, "type": "work", "primary": True}] if value else None
    if kept:
        changes["attributes"] = kept
    return changes


def _attributes_merge(stored: dict[str, Any], kept: dict[str, Any]) -> dict[str, Any]:
    merged = dict(stored)
    for key, value in kept.items():
        if key == "name.":
            merged["name"] = {**(merged.get("name") or {}), **value}
        elif value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    return merged


def _user_apply(user: Any, account: DirectoryAccount, changes: dict[str, Any]) -> None:
    from assistant.audit.models import AuditEvent

    user_model = get_user_model()
    username = changes.get("username")
    if username is not None:
        if not username or len(username) > 150:
            raise ScimError(400, "userName must be 1 to 150 characters.", "invalidValue")
        if user_model.objects.filter(username=username).exclude(pk=user.pk).exists():
            raise ScimError(409, f"The user name '{username}' is taken.", "uniqueness")
        user.username = username
    for field in ("first_name", "last_name", "email"):
        if field in changes:
            setattr(user, field, changes[field])
    user.save()
    if "external_id" in changes:
        account.external_id = changes["external_id"]
    if "attributes" in changes or changes.get("replace"):
        stored = {} if changes.get("replace") else (account.attributes or {})
        account.attributes = _attributes_merge(stored, changes.get("attributes", {}))
    account.last_synced_at = timezone.now()
    try:
        with transaction.atomic():
            account.save()
    except IntegrityError as exc:
        raise ScimError(409, "Another user has that externalId.", "uniqueness") from exc
    recorded = {k: v for k, v in changes.items() if k not in ("active", "attributes", "replace")}
    if recorded:
        _audit(AuditEvent.Action.SCIM_USER_CHANGED, user, user=user.get_username(), changes=sorted(recorded))
    if "active" in changes:
        _user_set_active(user, account, changes["active"])


def _user_set_active(user: Any, account: DirectoryAccount, active: bool) -> None:
    from assistant.audit.models import AuditEvent

    if not active:
        account_deprovision(user=user, source=SOURCE, reason="disabled by the SCIM client")
        return
    account.refresh_from_db()
    if user.is_active or account.deprovisioned_at is None:
        # Active already, or an administrator deactivated them here: that stands.
        return
    type(user).objects.filter(pk=user.pk).update(is_active=True)
    user.is_active = True
    DirectoryAccount.objects.filter(pk=account.pk).update(deprovisioned_at=None)
    _audit(AuditEvent.Action.USER_REACTIVATED, user, user=user.get_username())


def scim_user_create(*, data: dict[str, Any]) -> Any:
    """Create the user a SCIM client pushes (409 when the user name is taken by anyone)."""
    from assistant.audit.models import AuditEvent

    changes = _user_changes(data)
    username = changes.get("username", "")
    if not username:
        raise ScimError(400, "userName is required.", "invalidValue")
    with transaction.atomic():
        user_model = get_user_model()
        if user_model.objects.filter(username=username).exists():
            raise ScimError(409, f"A user named '{username}' already exists.", "uniqueness")
        user = user_model.objects.create_user(username=username)
        account = DirectoryAccount.objects.create(user=user, source=SOURCE)
        _audit(AuditEvent.Action.USER_CREATED, user, user=username)
        _user_apply(user, account, {**changes, "active": changes.get("active", True)})
    return user


def scim_user_replace(*, user: Any, data: dict[str, Any]) -> Any:
    """PUT: the attributes given replace ours (missing names and e-mail become empty)."""
    changes = {"first_name": "", "last_name": "", "email": "", "replace": True, **_user_changes(data)}
    with transaction.atomic():
        _user_apply(user, user.directory_account, changes)
    return user


def scim_user_patch(*, user: Any, operations: list[tuple[str, str, Any]]) -> Any:
    """PATCH as Entra ID and Okta send it; attributes we do not keep are ignored."""
    changes: dict[str, Any] = {}
    for op, path, value in operations:
        if not path:
            if not isinstance(value, dict):
                raise ScimError(400, "An operation without a path needs an object value.", "invalidValue")
            part = _user_changes(value)
        elif op == "remove":
            part = _user_removal(path)
        else:
            part = _user_changes({path: value})
        kept = part.pop("attributes", {})
        changes.update(part)
        if kept:
            merged = changes.setdefault("attributes", {})
            for key, item in kept.items():
                merged[key] = {**merged.get(key, {}), **item} if key == "name." else item
    with transaction.atomic():
        _user_apply(user, user.directory_account, changes)
    return user


def _user_removal(path: str) -> dict[str, Any]:
    """A PATCH "remove" of ``path``; removing "active" or what we do not keep changes nothing."""
    top = path.lower().split("[")[0].split(".")[0]
    if top == "externalid":
        return {"external_id": ""}
    if top == "displayname":
        return {"attributes": {"displayName": None}}
    if top == "name":
        return {"first_name": "", "last_name": "", "attributes": {"name": None}}
    if top == "emails":
        return {"email": "", "attributes": {"emails": None}}
    return {}


def scim_user_delete(*, user: Any) -> None:
    """DELETE: access ends at once; the account stays deactivated, hidden from the client."""
    with transaction.atomic():
        account_deprovision(user=user, source=SOURCE, reason="deleted by the SCIM client")
        _members_remove_everywhere(user)
        DirectoryAccount.objects.filter(user=user).update(removed_at=timezone.now(), external_id="")


# --- Groups --------------------------------------------------------------------------


def _member_change(group: Group, user: Any, *, added: bool) -> None:
    from assistant.audit.models import AuditEvent

    if added:
        group.user_set.add(user)
    else:
        group.user_set.remove(user)
    _audit(
        AuditEvent.Action.PERMISSION_GRANTED if added else AuditEvent.Action.PERMISSION_REVOKED, group,
        group=group.name, user=user.get_username(), membership=True,
    )  # fmt: skip


def _members_remove_everywhere(user: Any) -> None:
    for group in scim_groups().filter(user=user):
        _member_change(group, user, added=False)


def _member_users(value: Any) -> list[Any]:
    items = value if isinstance(value, list) else [value] if value else []
    users = []
    for item in items:
        member_id = str(item.get("value", "")) if isinstance(item, dict) else str(item)
        try:
            users.append(scim_user(member_id))
        except ScimError as exc:
            raise ScimError(400, f"Member {member_id} is not a user provisioned here.", "invalidValue") from exc
    return users


def _members_set(group: Group, users: list[Any]) -> None:
    wanted = {u.pk: u for u in users}
    current = {u.pk: u for u in scim_users().filter(groups=group)}
    for pk in wanted.keys() - current.keys():
        _member_change(group, wanted[pk], added=True)
    for pk in current.keys() - wanted.keys():
        _member_change(group, current[pk], added=False)


def _members_add(group: Group, users: list[Any]) -> None:
    present = set(group.user_set.values_list("pk", flat=True))
    for user in users:
        if user.pk not in present:
            _member_change(group, user, added=True)
            present.add(user.pk)


def _members_remove(group: Group, users: list[Any]) -> None:
    present = set(group.user_set.values_list("pk", flat=True))
    for user in users:
        if user.pk in present:
            _member_change(group, user, added=False)
            present.discard(user.pk)


def _group_rename(group: Group, name: str) -> None:
    from assistant.audit.models import AuditEvent

    name = str(name or "").strip()[:150]
    if not name:
        raise ScimError(400, "displayName is required.", "invalidValue")
    if name == group.name:
        return
    if Group.objects.filter(name=name).exclude(pk=group.pk).exists():
        raise ScimError(409, f"A group named '{name}' already exists.", "uniqueness")
    previous, group.name = group.name, name
    group.save(update_fields=["name"])
    _audit(AuditEvent.Action.GROUP_RENAMED, group, group=name, previous=previous)


def _touch(group: Group, external_id: Any = None) -> None:
    owner = group.directory_group
    owner.last_synced_at = timezone.now()
    if external_id is not None:
        owner.external_id = str(external_id)[:1024]
    owner.save()


def scim_group_create(*, data: dict[str, Any]) -> Group:
    """Create a pushed group (409 when any group has the name: a local one is never taken)."""
    from assistant.audit.models import AuditEvent

    name = str(data.get("displayName") or "").strip()[:150]
    if not name:
        raise ScimError(400, "displayName is required.", "invalidValue")
    with transaction.atomic():
        if Group.objects.filter(name=name).exists():
            raise ScimError(409, f"A group named '{name}' already exists.", "uniqueness")
        group = Group.objects.create(name=name)
        DirectoryGroup.objects.create(group=group, source=SOURCE, external_id=str(data.get("externalId") or "")[:1024])
        _audit(AuditEvent.Action.GROUP_CREATED, group, group=name)
        _members_set(group, _member_users(data.get("members") or []))
        _touch(group)
    return group


def scim_group_replace(*, group: Group, data: dict[str, Any]) -> Group:
    with transaction.atomic():
        _group_rename(group, data.get("displayName") or group.name)
        _members_set(group, _member_users(data.get("members") or []))
        _touch(group, data.get("externalId"))
    return group


def scim_group_patch(*, group: Group, operations: list[tuple[str, str, Any]]) -> Group:
    """PATCH as Entra ID and Okta send it: members added, removed (by value or path filter) or replaced."""
    with transaction.atomic():
        for op, path, value in operations:
            lowered = path.lower()
            if not path:
                if not isinstance(value, dict):
                    raise ScimError(400, "An operation without a path needs an object value.", "invalidValue")
                if "displayName" in value:
                    _group_rename(group, value["displayName"])
                if "members" in value:
                    users = _member_users(value["members"])
                    (_members_add if op == "add" else _members_set)(group, users)
                if "externalId" in value:
                    _touch(group, value["externalId"])
            elif lowered == "displayname":
                _group_rename(group, value)
            elif lowered == "externalid":
                _touch(group, value or "")
            elif lowered == "members":
                if op == "add":
                    _members_add(group, _member_users(value))
                elif op == "replace":
                    _members_set(group, _member_users(value))
                elif value:
                    _members_remove(group, _member_users(value))
                else:
                    _members_set(group, [])
            elif (member_id := member_path_value(path)) is not None and op == "remove":
                _members_remove(group, [scim_user(member_id)] if scim_users().filter(pk=_int(member_id)) else [])
            else:
                raise ScimError(400, f"Unsupported path {path!r} for {op}.", "invalidPath")
        _touch(group)
    return group


def _int(text: str) -> int:
    return int(text) if text.isdigit() else -1


def scim_group_delete(*, group: Group) -> None:
    """DELETE: members leave at once. A group that restricts documents stays (empty, local)."""
    from assistant.accounts.services import GroupInUse, group_delete

    with transaction.atomic():
        _members_set(group, [])
        try:
            with transaction.atomic():
                group_delete(group=group)
        except GroupInUse:
            # Deleting it would make its documents readable to every reader of the
            # collection; emptied, it keeps them closed until an administrator decides.
            DirectoryGroup.objects.filter(group=group).delete()
