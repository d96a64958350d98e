"""Tables from every format arrive as pipe rows, each carrying its table's header."""

from __future__ import annotations

import csv
import io
import time
from datetime import datetime
from pathlib import Path

import pytest

from ingest.parsers import Element, parse_file
from ingest.parsers.tables import html_table_rows, table_elements
from tests.ingest.parser_files import write

CUPS_HEADER = "| Team | Location | Stanley Cups |"


def rows_of(parsed, header: str) -> list[Element]:
    return [e for e in parsed.elements if e.table_header == header]


def test_xlsx_sheets_are_pages_and_rows_carry_the_header(formats_dir: Path) -> None:
    file_type, parsed = parse_file(formats_dir / "stanley-cups.xlsx", name="stanley-cups.xlsx")
    assert file_type == "xlsx"
    assert parsed.pages == 2
    assert parsed.elements[0] == Element("Stanley Cups", kind="title", page=1)
    rows = rows_of(parsed, CUPS_HEADER)
    assert [(e.text, e.page) for e in rows] == [
        ("| Blues | STL | 1 |", 1),
        ("| Flyers | PHI | 2 |", 1),
        ("| Maple Leafs | TOR | 13 |", 1),
        ("| Blues | STL | 1 |", 2),
        ("| Flyers | PHI | 2 |", 2),
        ("| Maple Leafs | TOR | 0 |", 2),
    ]
    assert all(e.kind == "table" for e in rows)
    assert Element("Stanley Cups Since 67", kind="title", page=2) in parsed.elements


def test_xlsx_tables_separated_by_blank_rows_keep_their_captions(formats_dir: Path) -> None:
    _, parsed = parse_file(formats_dir / "vodafone.xlsx", name="vodafone.xlsx")
    titles = [e.text for e in parsed.elements if e.kind == "title"]
    assert titles == ["Index", "Financial performance", "Operational metrics", "Other"]
    churn = next(e for e in parsed.elements if "Mobile churn" in e.text)
    assert churn.text == "| Mobile churn | Nine quarters to 30 June 2023 | 11 |"
    assert churn.table_header == "| Topic | Period | Page |"
    assert churn.page == 1


def test_xlsx_blank_row_inside_a_table_keeps_the_header(tmp_path: Path) -> None:
    from openpyxl import Workbook

    workbook = Workbook()
    sheet = workbook.active
    sheet.title = "Orders"
    for row in [
        ("Order", "Amount", "Shipped"),
        (1, 12.5, datetime(2024, 3, 1)),
        (),
        (2, 7, datetime(2024, 3, 2, 9, 30)),
    ]:
        sheet.append(row)
    workbook.create_sheet("Empty")
    out = io.BytesIO()
    workbook.save(out)
    _, parsed = parse_file(write(tmp_path, "orders.xlsx", out.getvalue()), name="orders.xlsx")
    assert parsed.pages == 2
    assert parsed.elements == [
        Element("Orders", kind="title", page=1),
        Element("| 1 | 12.5 | 2024-03-01 |", kind="table", page=1, table_header="| Order | Amount | Shipped |"),
        Element("| 2 | 7 | 2024-03-02 09:30:00 |", kind="table", page=1, table_header="| Order | Amount | Shipped |"),
    ]


def test_a_large_sheet_is_read_in_linear_time(tmp_path: Path) -> None:
    from openpyxl import Workbook

    def sheet_of(rows: int) -> Path:
        workbook = Workbook(write_only=True)
        sheet = workbook.create_sheet("Ledger")
        sheet.append(["Entry", "Account", "Amount", "Memo"])
        for n in range(rows):
            sheet.append([n, f"ACC-{n % 97}", n * 1.25, "monthly accrual"])
        path = tmp_path / f"ledger-{rows}.xlsx"
        workbook.save(path)
        return path

    def seconds(path: Path) -> float:
        timings = []
        for _ in range(2):  # the better of two runs: the first may pay for imports
            start = time.perf_counter()
            _, parsed = parse_file(path, name=path.name)
            timings.append(time.perf_counter() - start)
        assert parsed.elements[-1].table_header == "| Entry | Account | Amount | Memo |"
        return min(timings)

    small, large = sheet_of(2_000), sheet_of(10_000)
    ratio = seconds(large) / seconds(small)
    # Linear is 5x; quadratic would be 25x.
    assert ratio < 12, f"5x the rows took {ratio:.1f}x the time"


def test_csv_rows_carry_the_header(tmp_path: Path) -> None:
    out = io.StringIO()
    writer = csv.writer(out, delimiter=";")
    writer.writerows([["City", "Office lead", "Desks"], ["Lyon", "Ana | Bo", "40"], ["Oslo", "Kari", "12"]])
    file_type, parsed = parse_file(write(tmp_path, "offices.csv", out.getvalue().encode("utf-8")), name="offices.csv")
    assert file_type == "csv"
    assert parsed.elements == [
        Element("| Lyon | Ana \\| Bo | 40 |", kind="table", table_header="| City | Office lead | Desks |"),
        Element("| Oslo | Kari | 12 |", kind="table", table_header="| City | Office lead | Desks |"),
    ]


def test_tsv_rows_carry_the_header(tmp_path: Path) -> None:
    content = "Product\tPrice\nKettle\t25\nToaster\t40\n".encode("utf-16")
    file_type, parsed = parse_file(write(tmp_path, "prices.tsv", content), name="prices.tsv")
    assert file_type == "tsv"
    assert [(e.text, e.table_header) for e in parsed.elements] == [
        ("| Kettle | 25 |", "| Product | Price |"),
        ("| Toaster | 40 |", "| Product | Price |"),
    ]


def test_real_csv_with_long_lines(formats_dir: Path) -> None:
    _, parsed = parse_file(formats_dir / "csv-with-long-lines.csv", name="csv-with-long-lines.csv")
    assert len(parsed.elements) == 10
    assert parsed.elements[0].table_header.startswith("| SpearmanCorrelationCoefficient | 1Freq CD161CD8Tfrequency")
    assert parsed.elements[0].text.startswith("| 1Freq CD161CD8TfrequencyUnstim | 1 | -0.285021097 |")


@pytest.mark.parametrize(
    ("name", "row", "header", "page"),
    [
        ("docx-tables.docx", "| Lorem ipsum | A link example |", "| Header Col 1 | Header Col 2 |", None),
        ("fake-power-point-table.pptx", "| Purple | Orange | Yellow |", "| Column 1 | Column 2 | Column 3 |", 1),
        (
            "example-10k-1p.html",
            "| Common stock | GLXZ | OTCQB marketplace |",
            "| Title of each class | Trading symbol | Name of exchange on which registered |",
            None,
        ),
    ],
)
def test_tables_in_documents_become_rows_with_a_header(
    formats_dir: Path, name: str, row: str, header: str, page: int | None
) -> None:
    _, parsed = parse_file(formats_dir / name, name=name)
    assert Element(row, kind="table", page=page, table_header=header) in parsed.elements


def test_merged_cells_are_repeated_in_every_row_they_span() -> None:
    html = (
        '<table><tr><td rowspan="2">a</td><td colspan="2">b</td></tr>'
        '<tr><td>c</td><td rowspan="2">d</td></tr><tr><td colspan="2">e<br/>f</td></tr></table>'
    )
    assert html_table_rows(html) == [["a", "b", "b"], ["a", "c", "d"], ["e f", "e f", "d"]]


def test_header_only_when_the_first_row_looks_like_one() -> None:
    with_header = table_elements([["Region", "2022", "2023"], ["North", "1,200", "1,350"]], page=3)
    assert with_header == [
        Element("| North | 1,200 | 1,350 |", kind="table", page=3, table_header="| Region | 2022 | 2023 |")
    ]
    figures = table_elements([["Item 1.", "Business", "4"], ["Item 2.", "Properties", "9"]], page=None)
    assert [e.table_header for e in figures] == ["", ""]


def test_empty_columns_are_dropped_and_one_column_tables_are_text() -> None:
    assert table_elements([["", "Name", "", "Role"], ["", "Ana", "", "Chair"]], page=None) == [
        Element("| Ana | Chair |", kind="table", table_header="| Name | Role |")
    ]
    assert table_elements([["", "A long paragraph laid out in a table."]], page=2) == [
        Element("A long paragraph laid out in a table.", page=2)
    ]


def test_xlsx_stored_under_an_opaque_name_still_parses(formats_dir, tmp_path) -> None:
    # Uploads are stored without their extension; the type comes from the content.
    from ingest.parsers import parse_file

    stored = tmp_path / "0f3a9c"
    stored.write_bytes((formats_dir / "stanley-cups.xlsx").read_bytes())
    file_type, parsed = parse_file(stored, name="stanley-cups.xlsx")
    assert file_type == "xlsx"
    assert any("Stanley Cups" in e.text for e in parsed.elements)
