"""No module of dazibao.node or dazibao.protocol is over 600 lines, unless it says why.

A module that long usually holds several jobs that want rooms of their own.  When one job
really needs the length (a state machine read best in one piece, a table), the first paragraph
of the module's docstring says so, on a line starting "Longer than 600 lines because".
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FOLDERS = (ROOT / "node", ROOT / "protocol")
MAX_LINES = 600
REASON = "Longer than 600 lines because"


def first_paragraph(docstring: str | None) -> list[str]:
    """The lines of a docstring's first paragraph (up to its first blank line), stripped."""
    lines = []
    for line in (docstring or "").splitlines():
        if not line.strip():
            break
        lines.append(line.strip())
    return lines


def gives_reason(source: str) -> bool:
    return any(line.startswith(REASON) for line in first_paragraph(ast.get_docstring(ast.parse(source))))


def oversized() -> dict[str, int]:
    out = {}
    for folder in FOLDERS:
        for path in sorted(folder.rglob("*.py")):
            if "__pycache__" in path.parts:
                continue
            source = path.read_text(encoding="utf-8")
            lines = len(source.splitlines())
            if lines > MAX_LINES and not gives_reason(source):
                out[str(path.relative_to(ROOT))] = lines
    return out


def test_the_reason_must_open_the_docstring():
    assert gives_reason(f'"""The bundle format.\n{REASON} the reader is one state machine."""\n')
    assert gives_reason(f'"""{REASON} it is one table."""\n')
    # Further down the docstring, or in a comment, it does not count.
    assert not gives_reason(f'"""The bundle format.\n\n{REASON} the reader is one state machine."""\n')
    assert not gives_reason(f'# {REASON} of reasons\n"""The bundle format."""\n')
    assert not gives_reason("x = 1\n")


def test_no_module_is_over_600_lines_without_a_reason():
    assert oversized() == {}, (
        f"split these modules, or open their docstring with a line starting {REASON!r}: {oversized()}"
    )
