"""What a question names: its document (by name and context line) and its section (by heading)."""

from __future__ import annotations

import io

import pytest

from assistant.accounts.scope import Scope
from assistant.chat import document_match
from assistant.chat.fusion import with_matches
from assistant.chat.retrieval import HybridRetriever, _query_vector
from ingest import pipeline
from ingest import services as ingest_services
from ingest.models import Chunk, Document
from tests.factories import CollectionFactory

QUESTION = "What were Acme's FY2022 inventories according to the balance sheet?"

# Three reports alike in every word but whose and which year, and board minutes that
# talk about the same inventories: only the name says which report the question means.
REPORT = (
    "Annual report\n\n"
    "Letter to shareholders\n\n"
    "Inventories grew this year as we stocked the new stores; we expect them to fall.\n\n"
    "Balance sheet\n\n"
    "Inventories {inventories}\nTotal current assets {assets}\n"
)
DOCUMENTS = {
    "ACME_2021_annual_report.txt": REPORT.format(inventories=410, assets=900),
    "ACME_2022_annual_report.txt": REPORT.format(inventories=530, assets=1020),
    "GLOBEX_2022_annual_report.txt": REPORT.format(inventories=77, assets=300),
    "ACME_2022_board_minutes.txt": "Board minutes\n\nThe board discussed Acme's 2022 inventories at length.",
}


@pytest.fixture
def reports(db):
    collection = CollectionFactory.create(name="Reports")
    uploaded = [
        ingest_services.document_upload(
            collection=collection, name=name, fileobj=io.BytesIO(text.encode()), enqueue=False
        ).document.pk
        for name, text in DOCUMENTS.items()
    ]
    pipeline.documents_process(document_ids=uploaded)
    documents = {d.name: d for d in Document.objects.filter(pk__in=uploaded)}
    assert all(d.status == Document.Status.READY for d in documents.values())
    return collection, documents


def test_a_year_glued_to_letters_is_also_read_alone() -> None:
    assert document_match.with_glued_years("FY2018 capex") == "FY2018 capex FY 2018"
    assert document_match.with_glued_years("AMCOR 2023Q2") == "AMCOR 2023Q2 2023 Q2"
    # A quarter before its year: the quarter's digit is not the year's.
    assert document_match.with_glued_years("Q22023 revenue") == "Q22023 revenue Q2 2023"
    assert document_match.with_glued_years("part AQ22023, Q52023") == "part AQ22023, Q52023"
    # A company called 3M and a part number are not years.
    assert document_match.with_glued_years("3M part ZX4471") == "3M part ZX4471"


def test_question_words_are_read_as_the_cards_and_adjacent_words_also_joined() -> None:
    terms = document_match.question_terms("General Mills FY2020 balance sheet")
    assert {"2020", "fy2020", "balanc", "sheet"} <= terms
    assert "generalmil" in terms or "generalmills" in terms
    card = document_match.card_terms("GENERALMILLS_2020_10K.pdf", "One Boulevard · fiscal year ended May 31, 2019")
    assert card["2020"] == card["2019"] == card["10k"] == 1.0
    # A bare date is only the first date the opening pages mention, not the period covered.
    assert "2007" not in document_match.card_terms("memo.txt", "Memo · January 5, 2007")
    assert "boulevard" not in card  # the parser's title guess is not the name a person gave the file
    assert any(t.startswith("generalmil") for t in terms & set(card))
    # A file named by an id names nothing a question says.
    assert document_match.card_terms("198309074.txt", "Adhesion molecules and chemokines") == {}


def test_the_named_report_scores_best_and_a_question_naming_none_scores_nothing(reports) -> None:
    collection, documents = reports
    scope = Scope.of([collection.pk])
    scores = document_match.document_scores(scope, document_match.question_terms(QUESTION))
    assert document_match.named_documents(scores, most=2)[0] in {
        documents["ACME_2022_annual_report.txt"].pk,
        documents["ACME_2022_board_minutes.txt"].pk,
    }
    assert scores[documents["ACME_2022_annual_report.txt"].pk] > scores[documents["ACME_2021_annual_report.txt"].pk]
    assert scores[documents["ACME_2022_annual_report.txt"].pk] > scores.get(
        documents["GLOBEX_2022_annual_report.txt"].pk, 0.0
    )
    assert document_match.document_scores(scope, document_match.question_terms("How are stores stocked?")) == {}


def test_a_hidden_document_is_neither_named_nor_counted(reports) -> None:
    collection, documents = reports
    minutes = documents["ACME_2022_board_minutes.txt"]
    terms = document_match.question_terms("Acme 2022 board minutes")
    member = document_match.document_scores(Scope.of([collection.pk]), terms)
    assert document_match.named_documents(member, most=1) == [minutes.pk]  # the control
    outsider = document_match.document_scores(Scope.of([collection.pk], hidden_document_ids=[minutes.pk]), terms)
    assert minutes.pk not in outsider
    # What the outsider's scores say is what they would say had the minutes never existed.
    minutes_chunks = list(Chunk.objects.filter(document=minutes).values_list("pk", flat=True))
    assert minutes_chunks
    Document.objects.filter(pk=minutes.pk).update(status=Document.Status.FAILED)
    assert document_match.document_scores(Scope.of([collection.pk]), terms) == outsider


def test_the_balance_sheet_of_the_named_report_comes_first(reports) -> None:
    collection, documents = reports
    scope = Scope.of([collection.pk])
    top = HybridRetriever(scope=scope).retrieve(QUESTION, k=1)[0]
    assert top.document_id == documents["ACME_2022_annual_report.txt"].pk
    assert "Balance sheet" in top.heading and "530" in top.text


def test_a_section_is_the_heading_path_below_the_title() -> None:
    assert document_match.section_of("Annual report \u203a Balance sheet", "Annual report") == "Balance sheet"
    assert document_match.section_of("Adhesion molecules", "Adhesion molecules") == ""
    coverage = document_match.section_coverage(
        document_match.question_terms("the balance sheet"),
        {1: "Consolidated Balance Sheets", 2: "Consolidated Statements of Cash Flows", 3: ""},
    )
    assert coverage[1] > 0.6 and 2 not in coverage and 3 not in coverage


def test_the_named_reports_passages_join_the_candidates_however_few_are_asked(reports) -> None:
    collection, documents = reports
    named = documents["ACME_2022_annual_report.txt"].pk
    retriever = HybridRetriever(scope=Scope.of([collection.pk]), candidates=1)
    plain = retriever.candidates_scored(QUESTION, _query_vector(QUESTION), k=1)
    widened = retriever.candidates_scored(QUESTION, _query_vector(QUESTION), k=1, documents=[named])
    assert {row.document_id for row in widened.rows.values()} >= {named}
    assert len(widened.rows) > len(plain.rows)


@pytest.mark.parametrize("asker", ["outsider", "member"])
def test_naming_a_restricted_document_never_returns_it_to_an_outsider(reports, asker) -> None:
    collection, documents = reports
    minutes = documents["ACME_2022_board_minutes.txt"]
    hidden = [minutes.pk] if asker == "outsider" else []
    passages = HybridRetriever(scope=Scope.of([collection.pk], hidden_document_ids=hidden)).retrieve(
        "What did the Acme 2022 board minutes discuss?", k=5
    )
    assert (minutes.pk in {p.document_id for p in passages}) is (asker == "member")


def test_matches_add_to_the_normalised_fused_score() -> None:
    class Row:
        def __init__(self, document_id: int, heading: str) -> None:
            self.document_id, self.heading = document_id, heading

    rows = {1: Row(10, "Letter"), 2: Row(20, "Balance sheet"), 3: Row(20, "Letter")}
    fused = [(1, 0.8), (3, 0.6), (2, 0.4)]
    unchanged = with_matches(fused, rows, documents={}, sections={}, document_weight=0.6, heading_weight=0.3)
    assert unchanged == fused
    rescored = with_matches(
        fused,
        rows,
        documents={20: 1.0},
        sections={2: 1.0},
        document_weight=0.6,
        heading_weight=0.3,
    )
    assert [c for c, _ in rescored] == [2, 3, 1]
    assert rescored[0][1] == pytest.approx(0.4 / 0.8 + 0.6 + 0.3)
