"""Run one dazibao benchmark and print its figures, the last line being one JSON object.

Usage::

    python bench/run.py NAME [--quick]     # run bench/NAME.py
    python bench/run.py --list             # the benchmarks that can be run

A benchmark is a module beside this file with ``main(quick: bool) -> dict[str, float]``.  The
module prints its own human-readable lines; this runner then prints ``json.dumps(result)`` as the
very last line of output, so scripts can take ``tail -n 1`` and parse it.  Figures are reported as
ratios measured in the same run wherever possible, because the machines are noisy
(docs/performance.md, "How to run the benchmarks").

Exit status: 0 on success, 2 for a usage error or an unknown benchmark name (one line on
stderr).  An exception inside a benchmark is a bug and propagates with its traceback.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import json
import math
import sys
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent

# Files beside this one that are not benchmarks even if they define main().
_NOT_BENCHMARKS = {"run"}


def available() -> list[str]:
    """Names of the benchmarks beside this file: every NAME.py with a top-level ``main``.

    The files are parsed, not imported, so listing never runs benchmark code.
    """
    names = []
    for path in sorted(BENCH_DIR.glob("*.py")):
        name = path.stem
        if name in _NOT_BENCHMARKS or name.startswith("_") or not name.isidentifier():
            continue
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        except SyntaxError:
            continue
        if any(isinstance(node, ast.FunctionDef) and node.name == "main" for node in tree.body):
            names.append(name)
    return names


def _check_result(name: str, result: object) -> dict[str, float]:
    # A benchmark that returns something else is a bug in that benchmark: fail loudly.
    if not isinstance(result, dict):
        raise TypeError(f"bench/{name}.py: main() returned {type(result).__name__}, not a dict")
    for key, value in result.items():
        if not isinstance(key, str):
            raise TypeError(f"bench/{name}.py: result key {key!r} is not a string")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"bench/{name}.py: result {key!r} is {type(value).__name__}, not a number")
        if not math.isfinite(value):
            raise ValueError(f"bench/{name}.py: result {key!r} is {value}, not a finite number")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python bench/run.py",
        description="Run one dazibao benchmark; the last line printed is one JSON object of named figures.",
        epilog="examples:\n  python bench/run.py verify --quick\n  python bench/run.py --list",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("name", nargs="?", help="the benchmark to run (a module bench/NAME.py)")
    parser.add_argument("--quick", action="store_true", help="a short run (well under a minute) for smoke checks")
    parser.add_argument("--list", action="store_true", help="list the available benchmarks and exit")
    args = parser.parse_args(argv)

    names = available()
    if args.list:
        for name in names:
            print(name)
        return 0
    if args.name is None:
        print("run.py: name a benchmark to run, or pass --list", file=sys.stderr)
        return 2
    if args.name not in names:
        listed = ", ".join(names) or "none"
        print(f"run.py: unknown benchmark {args.name!r} (available: {listed})", file=sys.stderr)
        return 2

    if str(BENCH_DIR) not in sys.path:
        sys.path.insert(0, str(BENCH_DIR))
    module = importlib.import_module(args.name)
    result = _check_result(args.name, module.main(quick=args.quick))
    # Everything the benchmark printed goes out first, so the JSON object is the last line.
    sys.stdout.flush()
    sys.stderr.flush()
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
