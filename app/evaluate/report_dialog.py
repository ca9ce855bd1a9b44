"""Export report…: the run's evaluation as HTML (defect_studio.evaluation.report) and as PDF
(the same HTML printed by Qt's QTextDocument to a QPrinter)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from PySide6.QtCore import QMarginsF, QUrl
from PySide6.QtGui import QPageLayout, QPageSize, QTextDocument
from PySide6.QtPrintSupport import QPrinter
from PySide6.QtWidgets import QMessageBox

from defect_studio.errors import UserError


def html_to_pdf(html_path: Path, pdf_path: Path) -> Path:
    """Print an HTML file (pictures relative to it) to an A4 PDF."""
    doc = QTextDocument()
    doc.setBaseUrl(QUrl.fromLocalFile(str(html_path.parent) + "/"))
    doc.setHtml(html_path.read_text(encoding="utf-8"))
    printer = QPrinter(QPrinter.PrinterMode.HighResolution)
    printer.setOutputFormat(QPrinter.OutputFormat.PdfFormat)
    printer.setOutputFileName(str(pdf_path))
    printer.setPageLayout(QPageLayout(QPageSize(QPageSize.PageSizeId.A4),
                                      QPageLayout.Orientation.Portrait,
                                      QMarginsF(15, 15, 15, 15), QPageLayout.Unit.Millimeter))
    doc.print_(printer)
    return pdf_path


def write_report(view, out_html: str | Path, *, pdf: bool = True) -> tuple[Path, Path | None]:
    """The report of the Evaluate page's run at its current threshold: (html, pdf)."""
    from defect_studio.app.shell.help_menu import app_version
    from defect_studio.evaluation.report import build_report

    project, run_id = view._project, view.current_run()
    if project is None or run_id is None:
        raise UserError("no evaluated run to report on: evaluate a run first")
    with tempfile.TemporaryDirectory(prefix="defect-studio-report-") as tmp:
        curves = {}
        for title, plot in (("Precision-recall", view.pr_plot), ("ROC", view.roc_plot)):
            png = Path(tmp) / f"{title}.png"
            if plot.grab().save(str(png), "PNG"):
                curves[title] = png
        html_path = build_report(project, run_id, out_html, threshold=view.threshold(),
                                 curve_images=curves, app_version=app_version())
    pdf_path = html_to_pdf(html_path, html_path.with_suffix(".pdf")) if pdf else None
    return html_path, pdf_path


def export_report_dialog(view) -> tuple[Path, Path | None] | None:
    """Ask where, then write the HTML and PDF report; a message either way."""
    from defect_studio.app.common.dialog_dirs import pick_save_file

    run_id = view.current_run()
    if run_id is None:
        return None
    out = pick_save_file(view, "Export report", f"report-{run_id}.html", "HTML (*.html)")
    if not out:
        return None
    try:
        result = write_report(view, out)
    except (UserError, OSError) as e:
        QMessageBox.warning(view, "Report not written", str(e))
        return None
    html_path, pdf_path = result
    QMessageBox.information(view, "Report written",
                            f"{html_path}\n{pdf_path}" if pdf_path else str(html_path))
    return result
