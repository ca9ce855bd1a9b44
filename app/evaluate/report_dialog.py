"""Export report…: the run's evaluation as HTML (defect_studio.evaluation.report) and as PDF
(the same HTML printed by Qt's QTextDocument to a QPrinter)."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

from PySide6.QtCore import QMarginsF, QUrl
from PySide6.QtGui import QImage, QPageLayout, QPageSize, QTextDocument
from PySide6.QtPrintSupport import QPrinter
from PySide6.QtWidgets import QMessageBox

from defect_studio.errors import UserError


def html_to_pdf(html_path: Path, pdf_path: Path) -> Path:
    """Print an HTML file (pictures relative to it) to an A4 PDF."""
    html = html_path.read_text(encoding="utf-8")
    doc = QTextDocument()
    doc.setBaseUrl(QUrl.fromLocalFile(str(html_path.parent) + "/"))
    doc.setHtml(html)
    # Printing lays out a clone of the document, which does not find pictures by their
    # relative paths (the PDF had 16 px "missing image" icons): hand them over loaded.
    folder = html_path.parent.resolve()
    for src in set(re.findall(r"<img[^>]*\ssrc=['\"]([^'\"]+)['\"]", html)):
        path = (folder / src).resolve()
        if folder in path.parents and path.is_file():  # only the report's own files
            image = QImage(str(path))
            if not image.isNull():
                doc.addResource(QTextDocument.ResourceType.ImageResource, QUrl(src), image)
    printer = QPrinter(QPrinter.PrinterMode.HighResolution)
    printer.setOutputFormat(QPrinter.OutputFormat.PdfFormat)
    printer.setOutputFileName(str(pdf_path))
    printer.setPageLayout(QPageLayout(QPageSize(QPageSize.PageSizeId.A4),
                                      QPageLayout.Orientation.Portrait,
                                      QMarginsF(15, 15, 15, 15), QPageLayout.Unit.Millimeter))
    doc.print_(printer)
    return pdf_path


CURVE_PX = (480, 360)  # drawn for the page (shown 245 pt wide: two side by side on A4)


def render_curves(state, folder: Path) -> dict[str, Path]:
    """The PR and ROC curves of the page's evaluation with the threshold's marker, drawn
    off-screen at CURVE_PX, whatever size (or squashed shape) the page has on screen."""
    import pyqtgraph as pg
    from PySide6.QtCore import Qt

    from defect_studio.app.common.plot_style import SERIES, style_plot

    ev, c = state.evaluation, state.counts()
    if ev is None or c is None:
        return {}
    (recall, prec), (fpr, tpr) = state.markers(c)
    out = {}
    for title, xs, ys, marker, (xlab, ylab) in (
            ("Precision-recall", ev.pr["recall"], ev.pr["precision"], (recall, prec),
             ("recall", "precision")),
            ("ROC", ev.roc["fpr"], ev.roc["tpr"], (fpr, tpr),
             ("false positive rate", "true positive rate"))):
        plot = pg.PlotWidget(title=title)
        plot.setAttribute(Qt.WidgetAttribute.WA_DontShowOnScreen)
        plot.resize(*CURVE_PX)
        plot.setLabel("bottom", xlab)
        plot.setLabel("left", ylab)
        plot.setXRange(0, 1, padding=0.02)
        plot.setYRange(0, 1, padding=0.02)
        plot.showGrid(x=True, y=True, alpha=0.3)
        if title == "ROC":
            plot.plot([0, 1], [0, 1], pen=pg.mkPen(SERIES["gray"], style=Qt.PenStyle.DashLine))
        plot.plot(xs, ys, pen=pg.mkPen(SERIES["blue"], width=2))
        plot.addItem(pg.ScatterPlotItem([marker[0]], [marker[1]], size=12,
                                        brush=pg.mkBrush(SERIES["red"])))
        style_plot(plot)
        plot.show()  # laid out at CURVE_PX, never on screen
        png = folder / f"{title}.png"
        image = plot.grab()
        plot.close()
        plot.deleteLater()
        if image.width() == CURVE_PX[0] and image.save(str(png), "PNG"):
            out[title] = png
    return out


def write_report(view, out_html: str | Path, *, pdf: bool = True) -> tuple[Path, Path | None]:
    """The report of the Evaluate page's run at its current threshold: (html, pdf)."""
    from defect_studio.app.shell.help_menu import app_version
    from defect_studio.evaluation.report import build_report

    project, run_id = view._project, view.current_run()
    if project is None or run_id is None:
        raise UserError("no evaluated run to report on: evaluate a run first")
    with tempfile.TemporaryDirectory(prefix="defect-studio-report-") as tmp:
        curves = render_curves(view.state, Path(tmp))
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
