"""Who may read a file on an SMB share, from the file's own security descriptor.

The descriptor is asked for with SMB2 QUERY_INFO (info type security, owner, group
and DACL; [MS-SMB2] 2.2.37) in one compound request with the open and the close,
so a file costs one round trip. Its DACL ([MS-DTYP] 2.4.5) is read here: the SIDs
of the ACCESS_ALLOWED ACEs that grant reading the data, and those of the
ACCESS_DENIED ACEs that deny it. ACEs that only pass on to children
(INHERIT_ONLY) do not apply to the file.

Turning SIDs into product groups (``acl_groups``), least permissive:

* a descriptor without a DACL grants everyone everything: every reader of the
  collection; so do the well-known SIDs Everyone (S-1-1-0) and Authenticated Users
  (S-1-5-11), unless the mapping names them;
* a SID the mapping (``--acl-map SID=GROUP[,GROUP]``) names grants those groups;
* any other SID grants nothing: with none known, the managers only;
* a DENY that takes reading away from anyone makes the file the managers' only: a
  restriction to groups cannot say "these groups except those people".
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass

from assistant.connectors.sources import EVERYONE
from assistant.connectors.sources.groupmap import groupmap_apply

# Well-known SIDs that stand for every person the file server knows.
EVERYONE_SIDS = {"S-1-1-0": "Everyone", "S-1-5-11": "Authenticated Users"}
_SID = re.compile(r"^S-1-\d+(-\d+)*$")
# [MS-DTYP] 2.4.3: FILE_READ_DATA, GENERIC_READ, GENERIC_ALL.
READ_BITS = 0x00000001 | 0x80000000 | 0x10000000
_ALLOWED, _DENIED = 0x00, 0x01
_INHERIT_ONLY = 0x08
_DACL_PRESENT = 0x0004


@dataclass(frozen=True)
class FileAcl:
    """What a file's DACL says about reading it."""

    readers: tuple[str, ...]  # SIDs an ALLOW ACE lets read
    denied: tuple[str, ...] = ()  # SIDs a DENY ACE keeps from reading
    unrestricted: bool = False  # no DACL at all: everyone may do everything


def is_sid(value: str) -> bool:
    return bool(_SID.match(value.strip().upper()))


def _sid(data: bytes, offset: int) -> tuple[str, int]:
    """A SID in its packet form ([MS-DTYP] 2.4.2.2) as ``S-1-...``, and its length."""
    revision, count = data[offset], data[offset + 1]
    authority = int.from_bytes(data[offset + 2 : offset + 8], "big")
    subs = struct.unpack_from(f"<{count}I", data, offset + 8)
    return "-".join(["S", str(revision), str(authority), *map(str, subs)]), 8 + 4 * count


def acl_parse(descriptor: bytes) -> FileAcl:
    """The read-related part of a self-relative security descriptor ([MS-DTYP] 2.4.6)."""
    if len(descriptor) < 20:
        raise ValueError("The server sent a security descriptor too short to read.")
    control, dacl_at = struct.unpack_from("<H", descriptor, 2)[0], struct.unpack_from("<I", descriptor, 16)[0]
    if not control & _DACL_PRESENT or dacl_at == 0:
        return FileAcl(readers=(), unrestricted=True)
    count = struct.unpack_from("<H", descriptor, dacl_at + 4)[0]
    readers: set[str] = set()
    denied: set[str] = set()
    at = dacl_at + 8
    for _ in range(count):
        kind, flags, size = struct.unpack_from("<BBH", descriptor, at)
        if size < 8:
            raise ValueError("The server sent a damaged access control entry.")
        if kind in (_ALLOWED, _DENIED) and not flags & _INHERIT_ONLY:
            mask = struct.unpack_from("<I", descriptor, at + 4)[0]
            if mask & READ_BITS:
                (readers if kind == _ALLOWED else denied).add(_sid(descriptor, at + 8)[0])
        # Other kinds (object, callback ACEs) say nothing a file share uses here: skipped.
        at += size
    return FileAcl(readers=tuple(sorted(readers)), denied=tuple(sorted(denied)))


def acl_groups(acl: FileAcl, mapping: dict[str, list[str]]) -> list[str]:
    """Product group names for ``acl`` (``["*"]``: every reader; ``[]``: the managers only)."""
    if acl.denied:
        return []
    if acl.unrestricted:
        return [EVERYONE]
    found = groupmap_apply(mapping, acl.readers)
    named = {sid.casefold() for sid in mapping}
    if any(sid in EVERYONE_SIDS and sid.casefold() not in named for sid in acl.readers):
        return [EVERYONE]
    return [EVERYONE] if EVERYONE in found else sorted(found)


def descriptor_read(unc: str, **kwargs: object) -> bytes:
    """The file's security descriptor (owner, group, DACL) in one compound open/query/close."""
    from smbclient._io import SMBFileTransaction, SMBRawIO
    from smbprotocol.file_info import InfoType
    from smbprotocol.open import InfoAdditionalInformation, SMB2QueryInfoRequest, SMB2QueryInfoResponse
    from smbprotocol.security_descriptor import AccessMask

    raw = SMBRawIO(unc, mode="r", share_access="rwd", desired_access=AccessMask.READ_CONTROL, **kwargs)
    request = SMB2QueryInfoRequest()
    request["info_type"] = InfoType.SMB2_0_INFO_SECURITY
    request["output_buffer_length"] = 65535
    request["additional_information"] = (
        InfoAdditionalInformation.OWNER_SECURTIY_INFORMATION
        | InfoAdditionalInformation.GROUP_SECURITY_INFORMATION
        | InfoAdditionalInformation.DACL_SECURITY_INFORMATION
    )
    request["file_id"] = raw.fd.file_id

    def received(sent: object) -> bytes:
        response = raw.fd.connection.receive(sent)
        answer = SMB2QueryInfoResponse()
        answer.unpack(response["data"].get_value())
        found: bytes = answer["buffer"].get_value()
        return found

    with SMBFileTransaction(raw) as transaction:
        transaction += (request, received)
    descriptor: bytes = transaction.results[0]
    return descriptor
