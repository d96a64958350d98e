"""``manage.py evaluate`` on tiny datasets made here, through the real pipeline and retrievers."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from assistant.chat.retrieval import available_retrievers
from ingest.models import Collection
from tests.support.documents import HANDBOOK_PAGES, make_pdf
from tests.support.processes import free_port

pytestmark = pytest.mark.django_db

CORPUS = [
    {"_id": "bread", "title": "Baking bread", "text": "Knead the dough, let it rise overnight, bake at 230 degrees."},
    {"_id": "volcano", "title": "Volcanoes", "text": "Magma rises through the crust and erupts as lava and ash."},
    {"_id": "tides", "title": "Ocean tides", "text": "The gravity of the moon pulls the oceans into two tidal bulges."},
    {"_id": "chess", "title": "Chess openings", "text": "The Sicilian defence answers 1.e4 with c5 for black."},
    {"_id": "bees", "title": "Honey bees", "text": "Worker bees dance to tell the hive where flowers with nectar are."},
]
QUERIES = [
    {"_id": "q1", "text": "How does the moon cause ocean tides?"},
    {"_id": "q2", "text": "Which opening answers e4 with c5 in chess?"},
    # Judged against a document about something else: its rank is wherever it falls.
    {"_id": "q3", "text": "Why do volcanoes erupt lava?"},
]
QRELS = "query-id\tcorpus-id\tscore\nq1\ttides\t2\nq2\tchess\t1\nq3\tbees\t1\n"


def write_beir(root: Path, *, corpus: list[dict[str, str]] = CORPUS, qrels: str = QRELS) -> Path:
    (root / "qrels").mkdir(parents=True)
    (root / "corpus.jsonl").write_text("\n".join(json.dumps(d) for d in corpus) + "\n")
    (root / "queries.jsonl").write_text("\n".join(json.dumps(q) for q in QUERIES) + "\n")
    (root / "qrels" / "test.tsv").write_text(qrels)
    return root


def evaluate(*args: str) -> tuple[dict, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("evaluate", *args, "--json", stdout=out, stderr=err)
    return json.loads(out.getvalue()), err.getvalue()


@pytest.fixture
def beir(tmp_path: Path) -> Path:
    return write_beir(tmp_path / "tiny")


def test_beir_reports_every_retriever_with_values_that_follow_from_the_data(beir: Path) -> None:
    before = Collection.objects.count()
    results, _ = evaluate("--beir", str(beir))
    assert list(results) == available_retrievers()
    dense = results["dense"]
    assert set(dense) == {"ndcg@10", "recall@10", "recall@100", "mrr@10", "p50_ms", "p95_ms", "queries"}
    assert dense["queries"] == 3
    # All five documents come back for every query: every relevant one is found.
    assert dense["recall@10"] == dense["recall@100"] == 1.0
    # q1 and q2 rank their exact match first (1.0 each); q3's judged document is not
    # about volcanoes, so the volcano document outranks it: rank 2 to 5 of five.
    assert (2 + 1 / 5) / 3 - 1e-4 <= dense["mrr@10"] <= (2 + 1 / 2) / 3 + 1e-4
    assert dense["ndcg@10"] < 1.0
    assert 0 < dense["p50_ms"] <= dense["p95_ms"]
    assert Collection.objects.count() == before  # the throwaway collection is gone


def test_limit_and_k_restrict_the_queries_and_the_cutoff(beir: Path) -> None:
    results, _ = evaluate("--beir", str(beir), "--limit", "2", "--k", "1", "--retriever", "dense")
    assert list(results) == ["dense"]
    dense = results["dense"]
    assert dense["queries"] == 2
    assert dense["mrr@1"] == dense["ndcg@1"] == dense["recall@1"] == 1.0


def test_a_named_collection_is_kept_and_evaluated_again_without_reingesting(beir: Path) -> None:
    first, err = evaluate("--beir", str(beir), "--collection", "tiny-beir", "--retriever", "dense")
    assert "Created collection" in err
    collection = Collection.objects.get(name="tiny-beir")
    assert collection.documents.count() == len(CORPUS)
    second, err = evaluate("--beir", str(beir), "--collection", "tiny-beir", "--retriever", "dense")
    assert "as it is" in err
    assert collection.documents.count() == len(CORPUS)
    for key in ("ndcg@10", "recall@10", "mrr@10"):
        assert second["dense"][key] == first["dense"][key]


def test_text_output_is_a_table_of_retrievers(beir: Path) -> None:
    out = io.StringIO()
    call_command("evaluate", "--beir", str(beir), "--limit", "1", stdout=out, stderr=io.StringIO())
    lines = out.getvalue().splitlines()
    assert lines[0].split() == ["retriever", "ndcg@10", "recall@10", "recall@100", "mrr@10", "p50_ms", "p95_ms"]
    assert [line.split()[0] for line in lines[1:]] == available_retrievers()


def test_a_folder_that_is_not_beir_format_is_refused(tmp_path: Path) -> None:
    (tmp_path / "corpus.jsonl").write_text("{}\n")
    with pytest.raises(CommandError, match=r"not a BEIR-format folder: queries\.jsonl, qrels missing"):
        call_command("evaluate", "--beir", str(tmp_path))


def test_a_missing_split_names_the_splits_there(beir: Path) -> None:
    with pytest.raises(CommandError, match=r"No split 'dev'.*splits there: test"):
        call_command("evaluate", "--beir", str(beir), "--split", "dev")


def test_an_unknown_retriever_is_refused(beir: Path) -> None:
    with pytest.raises(CommandError, match="Unknown retriever sparse; available: dense"):
        call_command("evaluate", "--beir", str(beir), "--retriever", "sparse")


def test_a_malformed_corpus_line_is_named_and_the_throwaway_collection_removed(tmp_path: Path) -> None:
    root = write_beir(tmp_path / "bad")
    lines = (root / "corpus.jsonl").read_text().splitlines()
    lines.insert(2, '{"_id": "broken", "text": ')
    (root / "corpus.jsonl").write_text("\n".join(lines) + "\n")
    before = Collection.objects.count()
    with pytest.raises(CommandError, match=r"corpus.jsonl, line 3: not valid JSON"):
        call_command("evaluate", "--beir", str(root), stderr=io.StringIO())
    assert Collection.objects.count() == before


def test_a_qrels_line_with_a_bad_score_is_named(tmp_path: Path) -> None:
    root = write_beir(tmp_path / "bad", qrels="query-id\tcorpus-id\tscore\nq1\ttides\t1\nq2\tchess\thigh\n")
    with pytest.raises(CommandError, match=r"test.tsv, line 3: the score 'high' is not a number"):
        call_command("evaluate", "--beir", str(root))


# -- QA mode -------------------------------------------------------------------------

REPORT_PAGES = [
    "Quarterly Report, first quarter 2024\nThis report covers January to March 2024.",
    "Revenue\nRevenue in the first quarter of 2024 was 12.4 million euros, up 8 percent.",
]


@pytest.fixture
def qa_corpus(tmp_path: Path) -> Path:
    folder = tmp_path / "files"
    folder.mkdir()
    (folder / "Travel-Policy-2024.pdf").write_bytes(make_pdf(HANDBOOK_PAGES))
    (folder / "2024 Q1 Report.pdf").write_bytes(make_pdf(REPORT_PAGES))
    return folder


def write_qa(path: Path, rows: list[dict]) -> Path:
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


QA_ROWS: list[dict] = [
    {
        "question": "What is the daily meal allowance for international travel?",
        "gold_documents": ["*travel-policy*"],
        "gold_pages": [{"document": "*travel-policy*", "page": 2}],
    },
    {
        "question": "Where are lost badges reported?",
        "gold_documents": ["*TRAVEL-POLICY*"],
        "gold_pages": [{"document": "*travel-policy*", "page": 3}],
    },
    {
        # Right document, wrong gold page: the revenue figure is on page 2.
        "question": "What was the revenue in the first quarter of 2024?",
        "gold_documents": ["2024 q1 report*"],
        "gold_pages": [{"document": "2024 q1 report*", "page": 1}],
    },
    {"question": "What is the daily meal allowance abroad?", "gold_documents": ["2024 Q1 report*"]},
]


def test_qa_reports_document_and_page_recall(tmp_path: Path, qa_corpus: Path, settings) -> None:
    settings.LLM_BASE_URL = f"http://127.0.0.1:{free_port()}/v1"  # no LLM: cited_gold is not measured
    qa = write_qa(tmp_path / "qa.jsonl", QA_ROWS)
    before = Collection.objects.count()
    results, err = evaluate("--qa", str(qa), "--corpus", str(qa_corpus), "--k", "1", "--retriever", "dense")
    dense = results["dense"]
    # Three of four questions find their gold document first; the fourth names the wrong one.
    assert dense["recall@1"] == 0.75
    # Pages: two of the three questions with gold pages find a passage on that page.
    assert dense["page_recall@1"] == pytest.approx(2 / 3, abs=1e-4)
    assert dense["questions"] == 4
    assert dense["cited_gold"] is None
    assert "cited_gold: not measured" in err and "not reachable" in err
    assert Collection.objects.count() == before


def test_qa_warns_about_a_glob_that_matches_no_document(tmp_path: Path, qa_corpus: Path, settings) -> None:
    settings.LLM_BASE_URL = f"http://127.0.0.1:{free_port()}/v1"
    qa = write_qa(tmp_path / "qa.jsonl", [{"question": "Meal allowance?", "gold_documents": ["*expenses*"]}])
    results, err = evaluate("--qa", str(qa), "--corpus", str(qa_corpus))
    assert "line 1: no ready document matches '*expenses*'" in err
    assert results["dense"]["recall@5"] == 0.0
    assert results["dense"]["page_recall@5"] is None


def test_a_corpus_named_through_dot_dot_is_read_and_its_hidden_files_skipped(
    tmp_path: Path, qa_corpus: Path, settings, monkeypatch
) -> None:
    settings.LLM_BASE_URL = f"http://127.0.0.1:{free_port()}/v1"
    (qa_corpus / ".hidden").mkdir()
    (qa_corpus / ".hidden" / "notes.txt").write_text("The meal allowance abroad is 5 euros.")
    (qa_corpus / ".DS_Store").write_bytes(b"\0\1")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    qa = write_qa(tmp_path / "qa.jsonl", QA_ROWS[:1])
    results, _ = evaluate("--qa", str(qa), "--corpus", f"../{qa_corpus.name}", "--collection", "dots", "--k", "1")
    assert results["dense"]["recall@1"] == 1.0
    names = Collection.objects.get(name="dots").documents.values_list("name", flat=True)
    assert sorted(names) == ["2024 Q1 Report.pdf", "Travel-Policy-2024.pdf"]


def test_an_empty_qa_file_is_refused(tmp_path: Path, qa_corpus: Path) -> None:
    qa = tmp_path / "qa.jsonl"
    qa.write_text("\n\n")
    with pytest.raises(CommandError, match="holds no questions"):
        call_command("evaluate", "--qa", str(qa), "--corpus", str(qa_corpus))


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("not json", "line 2: not valid JSON"),
        ('{"question": "Where?"}', "line 2: 'gold_documents' must be a non-empty list"),
        ('{"question": "", "gold_documents": ["a"]}', "line 2: 'question' must be a non-empty string"),
        ('{"question": "Q?", "gold_documents": ["a"], "gold_pages": [{"document": "a", "page": 0}]}', "line 2: each"),
    ],
)
def test_a_malformed_qa_line_is_named(tmp_path: Path, qa_corpus: Path, line: str, message: str) -> None:
    qa = tmp_path / "qa.jsonl"
    qa.write_text(json.dumps(QA_ROWS[0]) + "\n" + line + "\n")
    before = Collection.objects.count()
    with pytest.raises(CommandError, match=message):
        call_command("evaluate", "--qa", str(qa), "--corpus", str(qa_corpus))
    assert Collection.objects.count() == before


def test_qa_needs_a_corpus_or_an_existing_collection(tmp_path: Path) -> None:
    qa = write_qa(tmp_path / "qa.jsonl", QA_ROWS[:1])
    with pytest.raises(CommandError, match="needs --corpus"):
        call_command("evaluate", "--qa", str(qa))


def test_qa_measures_cited_gold_with_the_real_llm(llm, settings, tmp_path: Path, qa_corpus: Path) -> None:
    # cited_gold is measured for the retriever that answers questions (RETRIEVAL_MODE).
    settings.RETRIEVAL_MODE = "dense"
    qa = write_qa(tmp_path / "qa.jsonl", QA_ROWS[:1])
    results, err = evaluate("--qa", str(qa), "--corpus", str(qa_corpus), "--retriever", "dense")
    assert "cited_gold: " in err and "of 1 answers" in err
    assert results["dense"]["cited_gold"] in (0.0, 1.0)
