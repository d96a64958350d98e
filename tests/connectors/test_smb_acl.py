"""Reading a security descriptor's DACL into product groups, least permissive (no server needed)."""

from __future__ import annotations

import struct

from assistant.connectors.sources.smb_acl import FileAcl, acl_groups, acl_parse

GROUP, OTHER = "S-1-5-21-1-2-3-1105", "S-1-5-21-1-2-3-1106"


def _sid(text: str) -> bytes:
    parts = [int(p) for p in text.split("-")[1:]]
    revision, authority, subs = parts[0], parts[1], parts[2:]
    return bytes([revision, len(subs)]) + authority.to_bytes(6, "big") + struct.pack(f"<{len(subs)}I", *subs)


def _ace(kind: int, mask: int, sid: str, flags: int = 0) -> bytes:
    body = struct.pack("<I", mask) + _sid(sid)
    return struct.pack("<BBH", kind, flags, 4 + len(body)) + body


def descriptor(*aces: bytes, dacl: bool = True) -> bytes:
    owner = _sid("S-1-22-1-0")
    acl = b"".join(aces)
    header_size = 20
    dacl_at = header_size + len(owner) if dacl else 0
    control = 0x8000 | (0x0004 if dacl else 0)
    header = struct.pack("<BBHIIII", 1, 0, control, header_size, 0, 0, dacl_at)
    body = owner + (struct.pack("<BBHHH", 2, 0, 8 + len(acl), len(aces), 0) + acl if dacl else b"")
    return header + body


READ, WRITE_ONLY = 0x001200A9, 0x00000116


def test_allowed_read_aces_name_the_readers_and_write_only_or_inherit_only_ones_do_not() -> None:
    found = acl_parse(descriptor(
        _ace(0, READ, GROUP), _ace(0, WRITE_ONLY, OTHER), _ace(0, READ, "S-1-1-0", flags=0x08),  # inherit-only
        _ace(0, 0x80000000, "S-1-5-21-1-2-3-1107"),  # GENERIC_READ
    ))  # fmt: skip
    assert found == FileAcl(readers=(GROUP, "S-1-5-21-1-2-3-1107"))
    assert acl_groups(found, {GROUP: ["hr"]}) == ["hr"]
    assert acl_groups(found, {}) == []  # unknown SIDs grant nothing: the managers only


def test_everyone_and_authenticated_users_mean_every_reader_unless_mapped() -> None:
    for sid in ("S-1-1-0", "S-1-5-11"):
        found = acl_parse(descriptor(_ace(0, READ, sid), _ace(0, READ, GROUP)))
        assert acl_groups(found, {GROUP: ["hr"]}) == ["*"]
        assert acl_groups(found, {sid: ["staff"], GROUP: ["hr"]}) == ["hr", "staff"]


def test_a_deny_makes_the_file_the_managers_only_and_no_dacl_opens_it() -> None:
    denied = acl_parse(descriptor(_ace(0, READ, "S-1-1-0"), _ace(1, READ, OTHER)))
    assert denied.denied == (OTHER,) and acl_groups(denied, {}) == []
    assert acl_groups(acl_parse(descriptor(dacl=False)), {}) == ["*"]
    assert acl_groups(acl_parse(descriptor()), {GROUP: ["hr"]}) == []  # an empty DACL: nobody
