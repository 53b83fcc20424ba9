"""The running node's own machinery, in-process."""

from __future__ import annotations

import logging

from dazibao.node import server
from dazibao.node.config import Config, DataDir


async def test_a_failing_background_loop_is_logged_and_restarted(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(server, "RESTART_DELAY_S", 0)
    node = server.Node(DataDir(tmp_path / "n"), Config())
    runs = []

    async def flaky() -> None:
        runs.append(1)
        if len(runs) == 1:
            raise RuntimeError("a bug")

    with caplog.at_level(logging.ERROR, logger="dazibao.node"):
        await node._supervised("flaky", flaky)
    assert len(runs) == 2
    assert "background task flaky failed" in caplog.text and "a bug" in caplog.text
    await node.core.close()
