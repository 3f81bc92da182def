"""Report how many inputs the fuzz tests tried (the README quotes the figure)."""

from __future__ import annotations

from typing import Any

from .fuzzing import EXAMPLES, TRIED


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if TRIED["inputs"]:
        terminalreporter.write_line(
            f"fuzz: {TRIED['inputs']} inputs tried (SOLAR_FUZZ_EXAMPLES={EXAMPLES})")
