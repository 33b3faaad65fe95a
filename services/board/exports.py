"""A board table as a file: XLSX (openpyxl) or CSV (UTF-8 with a byte-order mark, which Excel needs to
read Chinese text from a CSV)."""

from __future__ import annotations

import csv
import io

from openpyxl import Workbook
from openpyxl.styles import Font
from openpyxl.utils import get_column_letter

from services.board.domain.tables import Table

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
CSV = "text/csv; charset=utf-8"


def to_xlsx(table: Table) -> bytes:
    book = Workbook()
    sheet = book.active
    sheet.title = table.title[:31]  # Excel's limit for a sheet name
    sheet.append(table.header)
    for cell in sheet[1]:
        cell.font = Font(bold=True)
    for row in table.rows:
        sheet.append(row)
    sheet.freeze_panes = "A2"
    for index, name in enumerate(table.header, start=1):
        longest = max([len(str(name))] + [len(str(row[index - 1])) for row in table.rows])
        sheet.column_dimensions[get_column_letter(index)].width = min(60, 4 + 2 * longest)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def to_csv(table: Table) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(table.header)
    writer.writerows(table.rows)
    return ("\ufeff" + out.getvalue()).encode("utf-8")
