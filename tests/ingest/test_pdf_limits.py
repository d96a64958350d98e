"""Valid large PDFs are read, whatever the safety limits of the libraries behind the parser."""

from __future__ import annotations

import io

import pikepdf
import pypdf
import pytest
from pypdf.errors import LimitReachedError

from ingest import pipeline, services
from ingest.models import Document
from ingest.parsers.pdf import PdfParser
from tests.factories import CollectionFactory
from tests.support.documents import HANDBOOK_PAGES, make_pdf

pytestmark = pytest.mark.django_db


def pdf_with_many_links(links: int) -> bytes:
    """The handbook, its travel page carrying ``links`` link annotations in one /Annots array.

    Big manuals and filings link every cross-reference and footnote; here the array
    cycles over a hundred link annotations to keep the file small.
    """
    pdf = pikepdf.open(io.BytesIO(make_pdf(HANDBOOK_PAGES)))
    targets = [
        pdf.make_indirect(
            pikepdf.Dictionary(
                Type=pikepdf.Name.Annot,
                Subtype=pikepdf.Name.Link,
                Rect=[72 + i, 100, 73 + i, 110],
                Border=[0, 0, 0],
                A=pikepdf.Dictionary(S=pikepdf.Name.URI, URI=pikepdf.String(f"https://example.com/rules/{i}")),
            )
        )
        for i in range(100)
    ]
    pdf.pages[1].obj.Annots = pikepdf.Array([targets[i % len(targets)] for i in range(links)])
    out = io.BytesIO()
    pdf.save(out)
    return out.getvalue()


def test_a_valid_pdf_with_an_array_past_pypdfs_limit_becomes_ready_with_its_text() -> None:
    links = pypdf.get_configuration().array_maximum_element_count + 1  # past pypdf's safety limit
    content = pdf_with_many_links(links)
    with pikepdf.open(io.BytesIO(content)) as check:
        assert len(check.pages[1].Annots) == links
    collection = CollectionFactory.create()
    upload = services.document_upload(
        collection=collection, name="filing.pdf", fileobj=io.BytesIO(content), enqueue=False
    )
    pipeline.document_process(document_id=upload.document.pk)
    document = Document.objects.get(pk=upload.document.pk)
    assert (document.status, document.error, document.pages) == (Document.Status.READY, "", 3)
    allowance = [c for c in document.chunks.all() if "meal allowance" in c.text]
    assert [c.page_start for c in allowance] == [2]


def test_a_safety_limit_of_the_pdf_library_is_a_reason_an_admin_can_act_on(monkeypatch) -> None:
    """Were a limit still hit (a path through another library), the reason names it: never 'Internal error'."""

    def hits_a_limit(self, path, *, file_type):
        raise LimitReachedError("Reached maximum array element count.")

    monkeypatch.setattr(PdfParser, "parse", hits_a_limit)
    collection = CollectionFactory.create()
    upload = services.document_upload(
        collection=collection, name="filing.pdf", fileobj=io.BytesIO(make_pdf(["A filing."])), enqueue=False
    )
    pipeline.document_process(document_id=upload.document.pk)
    document = Document.objects.get(pk=upload.document.pk)
    assert document.status == Document.Status.FAILED
    assert "Internal error" not in document.error
    assert "safety limit of the PDF library pypdf (Reached maximum array element count.)" in document.error
    assert "An administrator can upload a copy re-saved by another PDF tool" in document.error
