"""Reports about finished runs (``dynabit report``)."""

from dynabit.reports.report import build_sections, render_html, render_markdown, write_report

__all__ = ["build_sections", "render_html", "render_markdown", "write_report"]
