"""protocol/ stays pure: no I/O, no clock, no randomness of its own (DESIGN.md, "The two halves").

Time must arrive as ``now`` and randomness as ``rng`` or bytes, so that the whole network can
run as a seeded, deterministic simulation and the decoders can be fuzzed without a server.  This
test reads every module's source with ``ast`` (nothing is imported or executed) and refuses the
imports and calls that would break that.  The checker is tested on bad snippets too, so that a
checker that finds nothing cannot pass for a clean tree.
"""

from __future__ import annotations

import ast
import sys
import textwrap
from pathlib import Path

import pytest

PROTOCOL_DIR = Path(__file__).resolve().parents[2] / "protocol"

# Modules that do I/O, read the clock, draw randomness, or belong to the shell.
FORBIDDEN_MODULES = {
    "asyncio", "aiohttp", "sqlite3", "sqlite_utils", "socket", "dazibao.node", "time", "random", "secrets",
    # Other ways to reach the network, other processes or threads; none belongs in a sans-IO core.
    "selectors", "ssl", "http", "urllib", "subprocess", "threading", "multiprocessing", "concurrent",
}
# Pure string handling inside an otherwise forbidden package (peer URLs are parsed, not fetched).
PURE_SUBMODULES = {"urllib.parse"}
# Clock and entropy reached through modules that are otherwise fine to import (os, datetime).
FORBIDDEN_ATTRIBUTES = {
    ("os", "urandom"), ("os", "getrandom"),
    ("datetime", "now"), ("datetime", "utcnow"), ("datetime", "today"), ("date", "today"),
    ("time", "time"), ("time", "monotonic"), ("time", "time_ns"), ("time", "monotonic_ns"), ("time", "perf_counter"),
}
# What protocol/ may import at all besides the standard library (DESIGN.md; PyNaCl provides
# libsodium's strict Ed25519 verification, see identity.verify).
ALLOWED_THIRD_PARTY = {"msgpack", "cryptography", "nacl"}


def _forbidden_module(name: str) -> bool:
    if any(name == ok or name.startswith(ok + ".") for ok in PURE_SUBMODULES):
        return False
    return any(name == bad or name.startswith(bad + ".") for bad in FORBIDDEN_MODULES)


def _dotted(node: ast.AST) -> list[str] | None:
    """``a.b.c`` as ["a", "b", "c"]; None for anything that is not a plain dotted name."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return parts[::-1]
    return None


def check_source(source: str, filename: str = "<snippet>") -> list[str]:
    """Every purity violation in ``source``, as "file:line: what" strings."""
    problems = []
    tree = ast.parse(source, filename=filename)

    def report(node: ast.AST, what: str) -> None:
        problems.append(f"{filename}:{getattr(node, 'lineno', '?')}: {what}")

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if _forbidden_module(alias.name):
                    report(node, f"imports {alias.name}")
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level == 0:
                if _forbidden_module(module):
                    report(node, f"imports from {module}")
                for alias in node.names:
                    if (module.rsplit(".", 1)[-1], alias.name) in FORBIDDEN_ATTRIBUTES:
                        report(node, f"imports {module}.{alias.name}")
                    if _forbidden_module(f"{module}.{alias.name}"):
                        report(node, f"imports {module}.{alias.name}")
            else:
                # protocol/ is dazibao.protocol, so a relative import of level 2 or more starts
                # at the dazibao package, where node/ lives.
                names = [module] if module else [alias.name for alias in node.names]
                if node.level >= 2 and any(n == "node" or n.startswith("node.") for n in names):
                    report(node, f"imports {'.' * node.level}{module or names} (the node package)")
        elif isinstance(node, ast.Attribute):
            parts = _dotted(node)
            if parts and len(parts) >= 2 and (parts[-2], parts[-1]) in FORBIDDEN_ATTRIBUTES:
                report(node, f"uses {'.'.join(parts)}")
        elif isinstance(node, ast.Call):
            # Dynamic imports with a literal name are imports all the same.
            func = _dotted(node.func)
            if func in (["__import__"], ["importlib", "import_module"]) and node.args:
                arg = node.args[0]
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str) and _forbidden_module(arg.value):
                    report(node, f"dynamically imports {arg.value}")
    return problems


def third_party_imports(source: str) -> set[str]:
    """Top-level names of absolute imports that are not in the standard library."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            tops = [alias.name.split(".")[0] for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            tops = [node.module.split(".")[0]]
        else:
            continue
        found.update(top for top in tops if top not in sys.stdlib_module_names and top != "__future__")
    return found


PROTOCOL_FILES = sorted(PROTOCOL_DIR.rglob("*.py"))


def test_the_scan_sees_the_protocol_package():
    # A wrong path would make the purity test vacuous.
    names = {path.name for path in PROTOCOL_FILES}
    assert {"__init__.py", "errors.py", "limits.py", "wire.py", "identity.py", "posts.py"} <= names


@pytest.mark.parametrize("path", PROTOCOL_FILES, ids=[str(p.relative_to(PROTOCOL_DIR)) for p in PROTOCOL_FILES])
def test_protocol_module_is_pure(path):
    source = path.read_text(encoding="utf-8")
    assert check_source(source, str(path.relative_to(PROTOCOL_DIR.parent))) == []
    unexpected = third_party_imports(source) - ALLOWED_THIRD_PARTY - {"dazibao"}
    assert not unexpected, f"protocol/ may import only the standard library and {sorted(ALLOWED_THIRD_PARTY)}"


# --- the checker itself ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "snippet",
    [
        "import asyncio",
        "import aiohttp.web",
        "from aiohttp import web",
        "import sqlite3",
        "import sqlite_utils",
        "from sqlite_utils import Database",
        "import socket",
        "import dazibao.node",
        "from dazibao.node import store",
        "from dazibao import node",
        "from ..node import store",
        "from .. import node",
        "from ...node.store import Store",
        "import time",
        "from time import monotonic",
        "import random",
        "from random import Random",
        "import secrets",
        "import os\nkey = os.urandom(32)",
        "from os import urandom",
        "import os\nrng = os.urandom",
        "import datetime\nt = datetime.datetime.now()",
        "from datetime import datetime\nt = datetime.now()",
        "from datetime import datetime\nt = datetime.utcnow()",
        "from datetime import date\nd = date.today()",
        "t = time.time()",
        "t = time.monotonic()",
        "def f():\n    import time\n    return time.time()",
        "mod = __import__('socket')",
        "import importlib\nmod = importlib.import_module('sqlite3')",
        "import subprocess",
    ],
)
def test_checker_flags_bad_snippets(snippet):
    assert check_source(textwrap.dedent(snippet)), snippet


@pytest.mark.parametrize(
    "snippet",
    [
        "import hashlib, hmac, struct, unicodedata",
        "from dataclasses import dataclass",
        "from . import limits, wire",
        "from .errors import FieldError",
        "import os\npath = os.path.join('a', 'b')",
        "from datetime import datetime, timezone\nt = datetime.fromtimestamp(now, timezone.utc)",
        "def check(now):\n    return now + 300",
        "def seal(rng):\n    return rng(16)",
        "nodes = [1, 2]\nfor node in nodes:\n    pass",
        "from .nodes_helper import x",
    ],
)
def test_checker_accepts_clean_snippets(snippet):
    assert check_source(textwrap.dedent(snippet)) == [], snippet


def test_checker_reports_file_and_line():
    problems = check_source("import hashlib\n\nimport socket\n", "protocol/bad.py")
    assert problems == ["protocol/bad.py:3: imports socket"]


def test_third_party_allowlist_flags_other_packages():
    assert third_party_imports("import requests\nimport msgpack\nimport os") == {"requests", "msgpack"}
