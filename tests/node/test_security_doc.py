"""docs/security.md agrees with the code: every node-local limit is listed with its value,
unit, meaning and rationale, and nothing else is."""

from __future__ import annotations

from pathlib import Path

from dazibao.protocol import limits
from tests.protocol.test_docs import section, table_rows

DOC = Path(__file__).resolve().parents[2] / "docs" / "security.md"


def test_every_node_limit_is_in_the_security_limits_table() -> None:
    doc = DOC.read_text(encoding="utf-8")
    rows = {
        cells[0].strip("`"): cells
        for cells in table_rows(section(doc, "Limits"))
        if cells[0].startswith("`")
    }
    assert set(rows) == {limit.name for limit in limits.NODE_TABLE}
    for limit in limits.NODE_TABLE:
        name, value, unit, meaning, why = rows[limit.name]
        assert value == str(limit.value), limit.name
        assert unit == limit.unit, limit.name
        assert meaning == limit.help, limit.name
        assert why == limit.why, limit.name


def test_node_limits_are_not_sent_as_protocol_limits() -> None:
    assert not {lim.name for lim in limits.NODE_TABLE} & {lim.name for lim in limits.PROTOCOL_TABLE}
