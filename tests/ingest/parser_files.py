"""Files for the parser tests, made on the fly: images with known text, EPUBs, archives."""

from __future__ import annotations

import io
import struct
import zipfile
from pathlib import Path


def write(tmp_path: Path, name: str, content: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(content)
    return path


def text_image(lines: list[str], *, image_format: str = "PNG", size: int = 48) -> bytes:
    """A white page with black text, as a scanner or a screenshot would give it."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default(size=size)
    image = Image.new("L", (1800, 150 + 110 * len(lines)), 255)
    draw = ImageDraw.Draw(image)
    for number, line in enumerate(lines):
        draw.text((80, 80 + 110 * number), line, font=font, fill=0)
    out = io.BytesIO()
    image.save(out, format=image_format)
    return out.getvalue()


def multipage_tiff(pages: list[list[str]]) -> bytes:
    from PIL import Image

    frames = [Image.open(io.BytesIO(text_image(lines))) for lines in pages]
    out = io.BytesIO()
    frames[0].save(out, format="TIFF", save_all=True, append_images=frames[1:])
    return out.getvalue()


def make_epub(title: str, paragraphs: list[str]) -> bytes:
    """A minimal valid EPUB 3: mimetype first and stored, a package file, one chapter."""
    body = "".join(f"<p>{paragraph}</p>" for paragraph in paragraphs)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as epub:
        epub.writestr(zipfile.ZipInfo("mimetype"), "application/epub+zip", compress_type=zipfile.ZIP_STORED)
        epub.writestr(
            "META-INF/container.xml",
            '<?xml version="1.0"?><container version="1.0" xmlns="urn:oasis:names:tc:opendocument:xmlns:container">'
            '<rootfiles><rootfile full-path="OEBPS/content.opf" media-type="application/oebps-package+xml"/>'
            "</rootfiles></container>",
        )
        epub.writestr(
            "OEBPS/content.opf",
            '<?xml version="1.0"?><package xmlns="http://www.idpf.org/2007/opf" version="3.0" unique-identifier="id">'
            '<metadata xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:identifier id="id">urn:uuid:1</dc:identifier>'
            f"<dc:title>{title}</dc:title><dc:language>en</dc:language></metadata>"
            '<manifest><item id="c1" href="c1.xhtml" media-type="application/xhtml+xml"/>'
            '<item id="nav" href="nav.xhtml" media-type="application/xhtml+xml" properties="nav"/></manifest>'
            '<spine><itemref idref="c1"/></spine></package>',
        )
        epub.writestr(
            "OEBPS/nav.xhtml",
            '<?xml version="1.0"?><html xmlns="http://www.w3.org/1999/xhtml" '
            'xmlns:epub="http://www.idpf.org/2007/ops"><head><title>Contents</title></head><body>'
            f'<nav epub:type="toc"><ol><li><a href="c1.xhtml">{title}</a></li></ol></nav></body></html>',
        )
        epub.writestr(
            "OEBPS/c1.xhtml",
            '<?xml version="1.0"?><html xmlns="http://www.w3.org/1999/xhtml"><head><title>c1</title></head>'
            f"<body><h1>{title}</h1>{body}</body></html>",
        )
    return out.getvalue()


def make_zip(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return out.getvalue()


def mark_encrypted(archive: bytes) -> bytes:
    """Set the "encrypted" flag on every member, as a password-protected zip has it.

    Python's zipfile cannot write encrypted archives; the flag is all a reader
    checks before asking for a password.
    """
    data = bytearray(archive)
    for signature, flag_offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        start = 0
        while (start := data.find(signature, start)) != -1:
            data[start + flag_offset] |= 0x01
            start += 4
    return bytes(data)


def encrypted_office_file() -> bytes:
    """A minimal OLE (CFB version 3) file shaped like a password-protected DOCX or XLSX.

    Office stores an encrypted OOXML package as the streams ``EncryptionInfo`` and
    ``EncryptedPackage`` in an OLE container. Each stream here is 4,096 bytes, the
    mini-stream cutoff, so the file needs no mini FAT: header, one FAT sector, one
    directory sector, then the two streams' sectors.
    """
    end_of_chain, free, fat_sector, no_stream = 0xFFFFFFFE, 0xFFFFFFFF, 0xFFFFFFFD, 0xFFFFFFFF
    sectors_per_stream = 8
    header = (
        struct.pack(
            "<8s16sHHHHH6sIIIIIIIII",
            b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1",
            b"\0" * 16,
            0x3E,  # minor version
            3,  # major version: 512-byte sectors
            0xFFFE,  # little-endian
            9,  # sector size 2**9
            6,  # mini sector size 2**6
            b"\0" * 6,
            0,  # directory sectors (always 0 in version 3)
            1,  # FAT sectors
            1,  # first directory sector
            0,
            4096,  # mini stream cutoff
            end_of_chain,  # no mini FAT
            0,
            end_of_chain,  # no DIFAT sectors
            0,
        )
        + struct.pack("<I", 0)  # the FAT is sector 0
        + struct.pack("<I", free) * 108
    )
    fat = [fat_sector, end_of_chain]
    for _ in range(2):
        first = len(fat)
        fat += [*range(first + 1, first + sectors_per_stream), end_of_chain]
    fat += [free] * (128 - len(fat))

    def entry(name: str, kind: int, right: int, child: int, start: int, size: int) -> bytes:
        encoded = (name + "\0").encode("utf-16-le")
        return struct.pack(
            "<64sHBBIII16sIQQIQ", encoded, len(encoded), kind, 1, no_stream, right, child, b"\0" * 16, 0, 0, 0,
            start, size,
        )  # fmt: skip

    directory = (
        entry("Root Entry", 5, no_stream, 1, end_of_chain, 0)
        + entry("EncryptionInfo", 2, 2, no_stream, 2, 4096)
        + entry("EncryptedPackage", 2, no_stream, no_stream, 2 + sectors_per_stream, 4096)
        + b"\0" * 128
    )
    return header + struct.pack("<128I", *fat) + directory + b"\0" * (2 * sectors_per_stream * 512)


def add_members(package: bytes, members: dict[str, bytes]) -> bytes:
    """``package`` (a zip: a DOCX, an EPUB...) with more members appended."""
    out = io.BytesIO(package)
    with zipfile.ZipFile(out, "a", zipfile.ZIP_DEFLATED) as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return out.getvalue()


def understate_size(archive: bytes, name: str, declared: bytes) -> bytes:
    """The archive with member ``name`` declaring only ``len(declared)`` bytes, with their
    checksum, while its data still unpacks to all it holds: a bomb hidden from every
    check on the central directory."""
    import zlib

    data = bytearray(archive)
    encoded = name.encode()
    fields = struct.pack("<I", zlib.crc32(declared)), struct.pack("<I", len(declared))
    # Local header: CRC at 14, uncompressed size at 22; central header: 16 and 24.
    for signature, crc_at, size_at, name_at in ((b"PK\x03\x04", 14, 22, 30), (b"PK\x01\x02", 16, 24, 46)):
        start = 0
        while (start := data.find(signature, start)) != -1:
            if data[start + name_at : start + name_at + len(encoded)] == encoded:
                data[start + crc_at : start + crc_at + 4] = fields[0]
                data[start + size_at : start + size_at + 4] = fields[1]
            start += 4
    return bytes(data)
