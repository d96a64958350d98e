"""ZIP archives: members become attachments; hostile archives are refused with a reason."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from ingest.parsers import Attachment, ParseError, parse_file
from tests.ingest.parser_files import make_zip, mark_encrypted, write


def read(attachment: Attachment) -> bytes:
    with attachment.open() as stream:
        return stream.read()


def test_real_archive_members_become_attachments(formats_dir: Path) -> None:
    file_type, parsed = parse_file(formats_dir / "simple.zip", name="simple.zip")
    assert file_type == "zip"
    assert parsed.elements == []
    assert [a.name for a in parsed.attachments] == ["ideas-page.html", "stanley-cups.csv"]
    with zipfile.ZipFile(formats_dir / "simple.zip") as archive:
        assert read(parsed.attachments[1]) == archive.read("stanley-cups.csv")


def test_folders_metadata_and_hidden_files_are_skipped_nested_archives_kept(tmp_path: Path) -> None:
    inner = make_zip({"deep.txt": b"deep"})
    archive = make_zip(
        {
            "reports/": b"",
            "reports/q1.txt": b"Revenue rose.",
            "__MACOSX/reports/._q1.txt": b"\0\0",
            ".DS_Store": b"\0",
            "reports/.secret": b"x",
            "old/archive.zip": inner,
        }
    )
    _, parsed = parse_file(write(tmp_path, "bundle.zip", archive), name="bundle.zip")
    assert [(a.name, read(a)) for a in parsed.attachments] == [
        ("reports/q1.txt", b"Revenue rose."),
        ("old/archive.zip", inner),
    ]


def test_zip_bomb_is_refused(tmp_path: Path) -> None:
    bomb = make_zip({"zeros.txt": b"\0" * (20 * 1024 * 1024)})
    assert len(bomb) < 100_000
    with pytest.raises(ParseError, match=r"zip bomb.*'zeros.txt' expands [\d,]+ times, more than the limit of 200"):
        parse_file(write(tmp_path, "bomb.zip", bomb), name="bomb.zip")


def test_small_members_are_not_judged_by_their_ratio(tmp_path: Path) -> None:
    archive = make_zip({"spaces.txt": b" " * 500_000 + b"end"})
    _, parsed = parse_file(write(tmp_path, "ok.zip", archive), name="ok.zip")
    assert [a.name for a in parsed.attachments] == ["spaces.txt"]


@pytest.mark.parametrize(
    "name", ["../../etc/passwd", "/etc/passwd", "docs/../../x.txt", "C:/Windows/x.txt", "..\\x.txt"]
)
def test_path_traversal_names_are_refused(tmp_path: Path, name: str) -> None:
    archive = make_zip({"fine.txt": b"fine", name: b"evil"})
    with pytest.raises(ParseError, match="unsafe path"):
        parse_file(write(tmp_path, "evil.zip", archive), name="evil.zip")


def test_too_many_members_are_refused(tmp_path: Path, settings) -> None:
    settings.INGEST_ARCHIVE_MAX_MEMBERS = 3
    archive = make_zip({f"note-{n}.txt": b"note" for n in range(4)})
    with pytest.raises(ParseError, match="4 entries, more than the limit of 3"):
        parse_file(write(tmp_path, "many.zip", archive), name="many.zip")


def test_too_large_in_total_is_refused(tmp_path: Path, settings) -> None:
    settings.INGEST_ARCHIVE_MAX_TOTAL_BYTES = 1024
    archive = make_zip({"a.txt": b"a" * 600, "b.txt": b"b" * 600})
    with pytest.raises(ParseError, match=r"unpacks to 1\.2 KiB, more than the limit of 1\.0 KiB"):
        parse_file(write(tmp_path, "big.zip", archive), name="big.zip")


def test_password_protected_archive_is_refused(tmp_path: Path) -> None:
    archive = mark_encrypted(make_zip({"salaries.csv": b"name,salary\n"}))
    with pytest.raises(ParseError, match="password-protected"):
        parse_file(write(tmp_path, "locked.zip", archive), name="locked.zip")


def test_archive_without_files_fails_with_a_reason(tmp_path: Path) -> None:
    archive = make_zip({"empty/": b"", "__MACOSX/x": b"x"})
    with pytest.raises(ParseError, match="contains no files"):
        parse_file(write(tmp_path, "empty.zip", archive), name="empty.zip")
