"""Every command line call starts a Python process, so what `dazibao` loads before it parses its
arguments is paid by every command (and hundreds of times by this test suite).  Commands that
only read or write the store never need the HTTP client and server, an event loop or the X.509
machinery: those are imported by the commands that use them (`run`, `sync`, `import`, `tls`)."""

from __future__ import annotations

import json
import subprocess
import sys

#: Modules that the command line must not load until a command needs them.
HEAVY = ("aiohttp", "aiohttp_socks", "asyncio", "cryptography.x509", "jinja2", "dazibao.node.service",
         "dazibao.node.server", "dazibao.node.sync", "dazibao.node.web")


def test_the_command_line_loads_no_network_or_web_module_before_a_command_needs_it():
    code = ("import json, sys\nimport dazibao.node.cli\n"
            f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []

