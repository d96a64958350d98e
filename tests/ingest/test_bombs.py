"""Archive and office-file bombs: refused with a reason naming the limit, in bounded memory,
while the rest of the batch goes on. Every bomb is built here."""

from __future__ import annotations

import hashlib
import io
import os
import tracemalloc
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ingest import pipeline, services
from ingest.models import Document
from ingest.parsers import ParseError, parse_file
from tests.factories import CollectionFactory
from tests.ingest.parser_files import add_members, make_zip, understate_size, write
from tests.support.documents import make_docx

MiB = 1024 * 1024


def peak_memory(work: Callable[[], Any]) -> tuple[Any, int]:
    """What ``work`` returns or raises, and the most memory Python held meanwhile."""
    tracemalloc.start()
    try:
        try:
            result: Any = work()
        except Exception as exc:
            result = exc
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_many_small_members_answer_to_the_ratio_together(tmp_path: Path) -> None:
    # Each member is under the floor a single small member is allowed; together they
    # are 64 MiB from a few tens of KiB, and were unpacked into memory whole.
    bomb = make_zip({f"part-{n}.txt": b"\0" * MiB for n in range(64)})
    assert len(bomb) < 200_000
    path = write(tmp_path, "parts.zip", bomb)
    error, peak = peak_memory(lambda: parse_file(path, name="parts.zip"))
    assert isinstance(error, ParseError), error
    assert "looks like a zip bomb" in str(error) and "unpack to 64.0 MiB" in str(error)
    assert "more than the limit of 200 (INGEST_ARCHIVE_MAX_RATIO)" in str(error)
    assert peak < 8 * MiB


def test_a_member_unpacking_to_more_than_it_declares_is_refused(tmp_path: Path) -> None:
    bomb = understate_size(make_zip({"small.txt": b"\0" * (32 * MiB)}), "small.txt", b"\0" * 1000)
    with zipfile.ZipFile(io.BytesIO(bomb)) as archive:
        assert archive.getinfo("small.txt").file_size == 1000
        assert archive.read("small.txt") == b"\0" * 1000  # zipfile alone is fooled
    path = write(tmp_path, "liar.zip", bomb)
    error, peak = peak_memory(lambda: parse_file(path, name="liar.zip"))
    assert isinstance(error, ParseError), error
    assert "looks like a zip bomb: 'small.txt' declares 1,000 bytes but its data unpacks to more" in str(error)
    assert peak < 8 * MiB


def test_a_docx_with_a_bomb_member_is_refused_before_its_parser_unpacks_it(tmp_path: Path) -> None:
    docx = add_members(make_docx([("Minutes", "The board met on Monday.")]), {"customXml/item9.xml": b" " * (64 * MiB)})
    assert len(docx) < 300_000
    path = write(tmp_path, "minutes.docx", docx)
    error, peak = peak_memory(lambda: parse_file(path, name="minutes.docx"))
    assert isinstance(error, ParseError), error
    assert str(error).startswith("The DOCX file looks like a zip bomb: 'customXml/item9.xml' expands")
    assert "more than the limit of 200 (INGEST_ARCHIVE_MAX_RATIO)" in str(error)
    assert peak < 8 * MiB  # python-docx would have read the whole member


def test_a_docx_whose_member_hides_its_size_is_refused(tmp_path: Path) -> None:
    docx = add_members(make_docx([("Minutes", "The board met on Monday.")]), {"customXml/item9.xml": b" " * (16 * MiB)})
    path = write(tmp_path, "minutes.docx", understate_size(docx, "customXml/item9.xml", b" " * 100))
    with pytest.raises(ParseError, match=r"^The DOCX file looks like a zip bomb: 'customXml/item9.xml' declares 100"):
        parse_file(path, name="minutes.docx")


def test_an_ordinary_docx_and_epub_still_parse(tmp_path: Path) -> None:
    from tests.ingest.parser_files import make_epub

    _, docx = parse_file(write(tmp_path, "a.docx", make_docx([("Minutes", "The board met.")])), name="a.docx")
    assert "The board met." in [e.text for e in docx.elements]
    _, epub = parse_file(write(tmp_path, "b.epub", make_epub("Guide", ["Keep left."])), name="b.epub")
    assert any("Keep left." in e.text for e in epub.elements)


@pytest.mark.django_db
def test_archive_members_are_streamed_never_held_whole(tmp_path: Path) -> None:
    """A large member that is no bomb is stored a block at a time, from parsing to storage."""
    member = os.urandom(20 * MiB).hex().encode()  # 40 MiB that compress about 2:1
    path = write(tmp_path, "export.zip", make_zip({"export/data.log": member}))
    collection = CollectionFactory.create()
    with open(path, "rb") as handle:
        upload = services.document_upload(collection=collection, name="export.zip", fileobj=handle, enqueue=False)

    # One file through first: the model and the modules it loads are not what is measured.
    warm = services.document_upload(collection=collection, name="warm.md", fileobj=io.BytesIO(b"# Warm"), enqueue=False)
    pipeline.document_process(document_id=warm.document.pk)
    _, peak = peak_memory(lambda: pipeline.document_process(document_id=upload.document.pk, enqueue_children=False))
    assert Document.objects.get(pk=upload.document.pk).status == Document.Status.READY
    child = Document.objects.get(parent=upload.document)
    assert (child.name, child.size, child.content_hash) == ("data.log", len(member), hashlib.sha256(member).hexdigest())
    # Storing an upload keeps up to 8 MiB in memory before it goes to disk (``_spool``),
    # whatever the file's size; the member itself is never held.
    assert peak < 16 * MiB < len(member) // 2


@pytest.mark.django_db
def test_archives_nested_past_the_limit_fail_with_a_reason(tmp_path: Path, settings) -> None:
    settings.INGEST_ARCHIVE_MAX_DEPTH = 2
    nested = make_zip({"note.txt": b"The deepest note."})
    for level in ("inner", "middle", "outer"):
        nested = make_zip({f"{level}.zip": nested})
    collection = CollectionFactory.create()
    upload = services.document_upload(collection=collection, name="top.zip", fileobj=io.BytesIO(nested), enqueue=False)
    ids = [upload.document.pk]
    while ids:  # each level as its own document, as the workers take them
        for document_id in ids:
            pipeline.document_process(document_id=document_id, enqueue_children=False, companions=False)
        ids = list(Document.objects.filter(parent_id__in=ids).values_list("pk", flat=True))
    documents = {d.name: d for d in collection.documents.all()}
    assert {n: d.status for n, d in documents.items()} == {
        "top.zip": "ready", "outer.zip": "ready", "middle.zip": "failed"
    }  # fmt: skip
    assert documents["middle.zip"].error == (
        "The file was found 2 levels deep inside archives or e-mails; the files inside it would go deeper "
        "than the limit of 2 levels (INGEST_ARCHIVE_MAX_DEPTH)."
    )


@pytest.mark.django_db
def test_a_bomb_fails_with_its_reason_and_the_rest_of_the_batch_goes_on() -> None:
    collection = CollectionFactory.create()
    files = {
        "bomb.zip": make_zip({f"part-{n}.txt": b"\0" * MiB for n in range(64)}),
        "minutes.docx": add_members(make_docx([("Minutes", "Met.")]), {"word/media/x.bin": b"\0" * (64 * MiB)}),
        "note.md": b"# Note\n\nThe office closes at six.",
    }
    ids = [
        services.document_upload(
            collection=collection, name=name, fileobj=io.BytesIO(content), enqueue=False
        ).document.pk
        for name, content in files.items()
    ]
    pipeline.documents_process(document_ids=ids, enqueue_children=False)
    documents = {d.name: d for d in collection.documents.all()}
    assert {n: d.status for n, d in documents.items()} == {"bomb.zip": "failed", "minutes.docx": "failed",
                                                           "note.md": "ready"}  # fmt: skip
    assert "(INGEST_ARCHIVE_MAX_RATIO)" in documents["bomb.zip"].error
    assert documents["minutes.docx"].error.startswith("The DOCX file looks like a zip bomb: 'word/media/x.bin'")
