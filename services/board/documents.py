"""A bulletin as a Word document (python-docx) and as HTML, both from the same sections."""

from __future__ import annotations

import io
from zoneinfo import ZoneInfo

from docx import Document
from docx.enum.text import WD_ALIGN_PARAGRAPH
from docx.oxml.ns import qn
from docx.shared import Pt
from jinja2 import Environment, FileSystemLoader, select_autoescape

from services.board.domain.bulletin import Bulletin, sections

SHANGHAI = ZoneInfo("Asia/Shanghai")
DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
ISSUER = "鼓楼区人民政府办公室督查室"
TEMPLATES = Environment(loader=FileSystemLoader(__file__.rsplit("/", 1)[0] + "/templates"),
                        autoescape=select_autoescape(["html"]))


def _chinese(run_or_style, font: str) -> None:
    """Word picks East Asian glyphs from the eastAsia font, not from the font name."""
    run_or_style.font.name = font
    run_or_style.element.get_or_add_rPr().get_or_add_rFonts().set(qn("w:eastAsia"), font)


def to_docx(bulletin: Bulletin) -> bytes:
    document = Document()
    _chinese(document.styles["Normal"], "仿宋")
    document.styles["Normal"].font.size = Pt(12)
    title = document.add_paragraph()
    title.alignment = WD_ALIGN_PARAGRAPH.CENTER
    run = title.add_run(bulletin.title)
    _chinese(run, "黑体")
    run.font.size, run.bold = Pt(18), True
    issued = document.add_paragraph(f"{ISSUER}　{bulletin.as_of.astimezone(SHANGHAI):%Y年%m月%d日}")
    issued.alignment = WD_ALIGN_PARAGRAPH.CENTER
    for section in sections(bulletin):
        heading = document.add_paragraph()
        run = heading.add_run(section.heading)
        _chinese(run, "黑体")
        run.bold = True
        for text in section.paragraphs:
            document.add_paragraph(text)
        if not section.header:
            continue
        if not section.rows:
            document.add_paragraph(section.empty)
            continue
        table = document.add_table(rows=1, cols=len(section.header))
        table.style = "Table Grid"
        for cell, name in zip(table.rows[0].cells, section.header):
            cell.text = name
            cell.paragraphs[0].runs[0].bold = True
        for row in section.rows:
            for cell, value in zip(table.add_row().cells, row):
                cell.text = value
    closing = document.add_paragraph(ISSUER)
    closing.alignment = WD_ALIGN_PARAGRAPH.RIGHT
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def to_html(bulletin: Bulletin) -> str:
    """The bulletin as an HTML fragment (an <article>), archived with the document and shown on the board."""
    return TEMPLATES.get_template("_bulletin.html").render(bulletin=bulletin, sections=sections(bulletin),
                                                          issuer=ISSUER, shanghai=SHANGHAI)
