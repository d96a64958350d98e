"""The context line: what a document is, embedded with every chunk."""

from __future__ import annotations

import pytest

from ingest.context import described, distinct_title, document_context, readable_name, stated_period
from ingest.parsers.base import Element


@pytest.mark.parametrize(
    ("name", "readable"),
    [
        ("3M_2018_10K.pdf", "3M 2018 10K"),
        ("AMCOR_2023Q2_10Q.pdf", "AMCOR 2023 Q2 10Q"),
        ("FOOTLOCKER_2022_8K_dated-2022-05-20.pdf", "FOOTLOCKER 2022 8K dated 2022-05-20"),
        ("travel-policy.v2.docx", "travel policy.v2"),
        ("2023 Q3 NVDA.pdf", "2023 Q3 NVDA"),
    ],
)
def test_file_names_made_readable(name: str, readable: str) -> None:
    assert readable_name(name) == readable


def _cover(company: str, period: str) -> list[Element]:
    return [
        Element(text="UNITED STATES SECURITIES AND EXCHANGE COMMISSION", kind="title", page=1),
        Element(text="FORM 10-K", kind="title", page=1),
        Element(text=f"For the {period}", page=1),
        Element(text=company, kind="title", page=1),
        Element(text="Risk Factors", kind="title", page=9),
    ]


def test_a_title_shared_with_other_documents_is_skipped() -> None:
    other = described(_cover("GLOBEX CORPORATION", "fiscal year ended June 30, 2021"), name="globex.pdf")
    about = described(
        _cover("ACME INDUSTRIES INC", "fiscal year ended December 31, 2022"),
        name="ACME_2022_10K.pdf",
        others=set(other.candidates),
    )
    assert about.title == "ACME INDUSTRIES INC"
    assert about.context == "ACME 2022 10K · ACME INDUSTRIES INC · fiscal year ended December 31, 2022"
    # Headings past the opening pages are sections, not titles.
    assert "Risk Factors" not in about.candidates


def test_form_lines_differing_only_in_numbers_or_blanks_are_the_same() -> None:
    others = {"Commission file number 1-3285", "For the transition period from to"}
    candidates = ["Commission file number 1-442", "For the transition period from ___ to ___", "THE BOEING COMPANY"]
    assert distinct_title(candidates, others=others) == "THE BOEING COMPANY"


def test_no_distinct_title_falls_back_to_the_name() -> None:
    candidates = ["FORM 10-Q"]
    assert distinct_title(candidates, others={"form 10-q"}) == ""
    about = described([Element(text="FORM 10-Q", kind="title", page=1)], name="q3_report.pdf", others={"FORM 10-Q"})
    assert about.title == "q3 report"
    assert about.context == "q3 report"


def test_periods_and_dates() -> None:
    assert stated_period([Element(text="For the quarterly period ended June 30, 2023", page=1)]) == (
        "quarterly period ended June 30, 2023"
    )
    assert stated_period([Element(text="For the three months ended April 1, 2023 and ...", page=2)]) == (
        "three months ended April 1, 2023"
    )
    assert stated_period([Element(text="Date of report: May 5, 2023", page=1)]) == "May 5, 2023"
    assert stated_period([Element(text="Fiscal year ended June 30, 2020", page=3)]) == ""  # past the opening pages


def test_a_name_without_words_is_left_out_and_parts_are_not_repeated() -> None:
    assert document_context(name="4983.txt", title="Vitamin D and bone density", period="") == (
        "Vitamin D and bone density"
    )
    assert document_context(name="Annual_Report.pdf", title="Annual report", period="") == "Annual Report"


def test_context_off_embeds_the_title_alone(settings) -> None:
    settings.CHUNK_DOCUMENT_CONTEXT = False
    about = described(_cover("ACME INDUSTRIES INC", "fiscal year ended December 31, 2022"), name="ACME_2022.pdf")
    assert about.context == about.title == "UNITED STATES SECURITIES AND EXCHANGE COMMISSION"


@pytest.mark.django_db
def test_the_pipeline_embeds_and_indexes_the_context_line_with_every_chunk() -> None:
    from ingest import lexical
    from ingest.models import Chunk
    from tests.factories import CollectionFactory, DocumentFactory

    collection = CollectionFactory.create()
    DocumentFactory.create(
        collection=collection,
        name="globex_annual.md",
        content="# Quarterly Report\n\n# Globex Corporation\n\nFor the fiscal year ended June 30, 2021.\n\nSales rose.",
        processed=True,
    )
    acme = DocumentFactory.create(
        collection=collection,
        name="ACME_2022_10K.md",
        content="# Quarterly Report\n\n# Acme Industries\n\nFor the fiscal year ended December 31, 2022.\n\n"
        "The board approved the buyback.",
        processed=True,
    )
    assert acme.status == "ready"
    # "Quarterly Report" opens the other document too: it says nothing of this one.
    assert acme.title == "Acme Industries"
    assert acme.context == "ACME 2022 10K · Acme Industries · fiscal year ended December 31, 2022"
    chunk = Chunk.objects.get(document=acme, text__contains="buyback")
    assert "10K" not in chunk.text  # the context is not in the stored passage...
    hits = lexical.lexical_search(collection_id=collection.pk, query="10K buyback", k=5)
    assert hits and hits[0].chunk_id == chunk.pk  # ...but it is indexed with it
