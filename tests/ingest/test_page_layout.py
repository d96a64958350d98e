"""Structure put back from plain page text: running lines, headings, paragraphs, table rows."""

from __future__ import annotations

from ingest.chunking import chunk_elements
from ingest.parsers.page_layout import page_elements, pages_elements, running_lines

STATEMENT = """\
Acme Industries and Subsidiaries
Consolidated Statement of Cash Flows
(Millions) 2022 2021 2020
Cash Flows from Investing Activities
Purchases of property, plant and equipment (1,577) (1,373) (1,420)
Proceeds from sale of businesses, net of cash sold
846 1,065 142
Total current liabilities $ 9,122 $ 8,015 $ 7,443
The accompanying notes are an integral part of this statement and should be read with it in full.
"""


def test_a_row_keeps_its_label_and_carries_the_header() -> None:
    elements = page_elements(STATEMENT.splitlines(), page=40)
    rows = {e.text: e for e in elements if e.kind == "table"}
    row = rows["Purchases of property, plant and equipment (1,577) (1,373) (1,420)"]
    assert row.table_header == "(Millions) 2022 2021 2020"
    assert row.page == 40
    # A currency sign stays with its number; values under a wrapped label join it.
    assert "Total current liabilities $9,122 $8,015 $7,443" in rows
    assert "Proceeds from sale of businesses, net of cash sold 846 1,065 142" in rows
    assert rows["Cash Flows from Investing Activities"].table_header == "(Millions) 2022 2021 2020"


def test_headings_and_paragraphs() -> None:
    elements = page_elements(STATEMENT.splitlines(), page=1)
    titles = [e.text for e in elements if e.kind == "title"]
    assert titles == ["Acme Industries and Subsidiaries", "Consolidated Statement of Cash Flows"]
    prose = [e for e in elements if e.kind == "text"]
    assert prose[-1].text.startswith("The accompanying notes")


def test_wrapped_lines_become_one_paragraph() -> None:
    lines = [
        "Revenue grew in every region, helped by the new",
        "subscription plans and by higher prices in Europe.",
        "Costs fell.",
    ]
    texts = [e.text for e in page_elements(lines, page=3)]
    assert texts == [
        "Revenue grew in every region, helped by the new subscription plans and by higher prices in Europe.",
        "Costs fell.",
    ]


def test_dated_columns_make_a_header() -> None:
    lines = ["Balance sheet", "June 30, 2023 December 31, 2022", "Inventories 4,120 3,998"]
    rows = [(e.text, e.table_header) for e in page_elements(lines, page=2) if e.kind == "table"]
    assert rows == [("Inventories 4,120 3,998", "June 30, 2023 December 31, 2022")]
    # A line of amounts is a row, not a header, whatever years it also names.
    assert [e.table_header for e in page_elements(["Notes due 2025 2030 1,250", "Cash 5 6"], page=1)] == ["", ""]


def test_running_headers_and_page_numbers_are_dropped() -> None:
    body = "\n".join(f"Line {i} of the body text on this page, which says something useful." for i in range(6))
    topics = ["Revenue", "Costs", "Staff", "Risks", "Outlook", "Taxes", "Leases", "Debt", "Pensions", "Segments"]
    pages = {
        n: f"Table of Contents\n{topic} in review\n{body}\nThe {topic.lower()} closing note.\nPage {n} of 10"
        for n, topic in enumerate(topics, start=1)
    }
    assert "table of contents" in running_lines({n: t.splitlines() for n, t in pages.items()})
    texts = [e.text for e in pages_elements(pages)]
    assert "Table of Contents" not in texts
    assert not [t for t in texts if t.startswith("Page ")]
    assert "The leases closing note." in texts
    assert "Leases in review" in texts


def test_a_chunk_from_the_middle_of_a_table_still_names_columns_and_heading() -> None:
    lines = ["Consolidated Balance Sheet", "(In millions) 2022 2021"]
    lines += [f"Line item number {i} of the balance sheet {i * 10} {i * 9}" for i in range(1, 80)]
    drafts = chunk_elements(page_elements(lines, page=5), max_tokens=120, context="ACME 2022 10K")
    assert len(drafts) > 3
    late = drafts[-1]
    assert late.heading == "Consolidated Balance Sheet"
    assert late.text.startswith("(In millions) 2022 2021")
    assert "Line item number 79 of the balance sheet 790 711" in late.text
    assert late.embedding_text.startswith("ACME 2022 10K\nConsolidated Balance Sheet\n")
