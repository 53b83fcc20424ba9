"""Where the CPU of one page of the public view goes, measured inside the process that serves it.

bench/serve.py measures pages from outside, over HTTP, as readers see them.  This one serves
the public view in this process, over 127.0.0.1, on a copy of serve's cached store of 100,000
posts (20,000 with ``--quick``), and measures on the event loop's thread, for a board page and
the long thread's page (101 posts):

* the **handler**: the CPU of the event loop's thread from the moment the request reaches the
  public view until its page is rendered (the reads on the read pool's threads excluded, the
  HTTP parsing and writing excluded), each request at a new address, so that the page cache
  never answers;
* the **template** alone: the same page's Jinja rendering, from the context the handler built;
* the same two with the **bodies rendered** for every request (the kept bodies cleared before
  each one), which is what a page costs the first time its posts are shown.

The figures are ratios within the run: the template's share of the handler, and bodies rendered
against bodies kept.  To compare with another version of the code, run this file with that
version's ``dazibao`` package first on the import path: the pages are the same, so the figures
are too.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

sys.path.insert(0, str(Path(__file__).resolve().parent))

import serve  # noqa: E402  (beside this file)

from dazibao.node.config import DataDir, load_config  # noqa: E402
from dazibao.node.service import NodeCore  # noqa: E402
from dazibao.node.web import base as web_base  # noqa: E402
from dazibao.node.web.public import make_public_app  # noqa: E402


def _bodies() -> Any:
    try:
        from dazibao.node.web.bodycache import BODIES
    except ImportError:  # an older version of the code: it kept no bodies by id
        return None
    return BODIES


async def _measure(data: DataDir, paths: dict[str, str], count: int) -> dict[str, float]:
    config = load_config(data, overrides={"public_view_listen": "127.0.0.1:0"}, environ={})
    core = NodeCore(data, config)
    await core.open()
    handler_cpu: list[float] = []
    template_cpu: list[float] = []

    @web.middleware
    async def timing(request: web.Request, handler: Any) -> web.StreamResponse:
        start = time.thread_time()
        try:
            return await handler(request)
        finally:
            handler_cpu.append(time.thread_time() - start)

    render = web_base.Templates.render

    def timed_render(self: web_base.Templates, lang: str, name: str, context: Any) -> str:
        start = time.thread_time()
        try:
            return render(self, lang, name, context)
        finally:
            template_cpu.append(time.thread_time() - start)

    app = make_public_app(core, config)
    app.middlewares.insert(0, timing)
    web_base.Templates.render = timed_render  # type: ignore[method-assign]
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    out: dict[str, float] = {}
    bodies = _bodies()
    try:
        for name, path in paths.items():
            for cold in (False, True):
                if cold and (bodies is None or name != "thread"):  # a board page shows no body
                    continue
                sep = "&" if "?" in path else "?"
                for i in range(count + 5):
                    if i == 5:  # the first five warm up the connection and the kept bodies
                        handler_cpu.clear()
                        template_cpu.clear()
                    if cold:
                        bodies.clear()
                    resp = await client.get(f"{path}{sep}r={i}{'c' if cold else ''}",
                                            headers={"Host": f"127.0.0.1:{client.port}"})
                    if resp.status != 200:
                        raise RuntimeError(f"{path}: {resp.status}")
                    await resp.read()
                h, t = statistics.median(handler_cpu) * 1000, statistics.median(template_cpu) * 1000
                key = f"{name}{'_bodies_rendered' if cold else ''}"
                out.update({f"{key}_handler_cpu_ms": h, f"{key}_template_cpu_ms": t, f"{key}_template_share": t / h})
                label = "bodies rendered" if cold else "bodies kept"
                print(f"  {name:7s} {label:15s}: handler {h:6.2f} ms CPU, template {t:6.2f} ms ({t / h:.0%} of it)")
            if bodies is not None and name == "thread":
                ratio = out[f"{name}_bodies_rendered_handler_cpu_ms"] / out[f"{name}_handler_cpu_ms"]
                out[f"{name}_bodies_rendered_over_kept"] = ratio
                print(f"  {name:7s} bodies rendered / kept: {ratio:.2f}x")
    finally:
        web_base.Templates.render = render  # type: ignore[method-assign]
        await client.close()
        await core.close()
    return out


def main(quick: bool) -> dict[str, float]:
    size = 20_000 if quick else 100_000
    count = 40 if quick else 200
    store = serve.build_store(size)
    print(f"load average at start: {os.getloadavg()[0]:.2f} ({os.cpu_count()} cores); store of {size:,} posts")
    conn = sqlite3.connect(f"file:{store}?mode=ro", uri=True)
    root = conn.execute("SELECT id FROM threads WHERE board = ? ORDER BY replies DESC LIMIT 1",
                        (serve.BIG,)).fetchone()[0]
    conn.close()
    paths = {"board": f"/b/{serve.BIG}", "thread": f"/p/{bytes(root).hex()}"}
    with tempfile.TemporaryDirectory(prefix="dazibao-render-") as tmp:
        data = DataDir(Path(tmp) / "node")
        data.create()
        shutil.copyfile(store, data.database)
        out = asyncio.run(_measure(data, paths, count))
    print(f"load average at end: {os.getloadavg()[0]:.2f}")
    return out
