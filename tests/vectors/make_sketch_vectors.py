"""Regenerate tests/vectors/sketch.json: vectors for the rateless sketches of reconciliation
(docs/protocol.md, "Reconciliation", §5.1 and §10).

Run from the repository root::

    python tests/vectors/make_sketch_vectors.py          # rewrite sketch.json
    python tests/vectors/make_sketch_vectors.py --check  # exit 1 if sketch.json is out of date

Deterministic: fixed ids (a byte repeated 32 times) and fixed times.  tests/protocol/
test_sketch.py checks that the committed file equals what this script produces, and replays
every case: the index sequences of single ids, the coded symbols of small sets, and a whole
conversation in which the responder answers with a Sketch and the Initiator decodes it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from dazibao.protocol import sketch
from dazibao.protocol.keyindex import KeyIndex
from dazibao.protocol.posts import post_key
from dazibao.protocol.reconcile import Initiator, respond

OUT = Path(__file__).with_name("sketch.json")
T0_MS = 1_700_000_000_000

SOURCE = (
    "dazibao's own vectors, written by tests/vectors/make_sketch_vectors.py from fixed ids (the "
    "byte n repeated 32 times) and fixed times; rerunning the script gives this file byte for byte."
)


def _id(n: int) -> bytes:
    return bytes([n]) * 32


def build() -> dict:
    indexes = [{"id": _id(n).hex(), "stop": 64, "indexes": sketch.indexes(_id(n), 64)} for n in (0, 1, 2, 0x80, 0xFF)]
    symbols = []
    for members, first, count in (([1], 0, 3), ([1, 2], 0, 4), ([1, 2, 3, 4, 5], 2, 3), ([], 0, 1)):
        items = [_id(n) for n in members]
        symbols.append({"ids": [i.hex() for i in items], "first": first, "count": count,
                        "symbols": sketch.encode(items, first, count).hex()})
    # "general": keys 1 to 12 at T0 + n ms.  The Initiator lacks key 4, the responder key 9;
    # both hold the newest (12), so the first reply answers the board's Fingerprint with a Sketch.
    keys = {n: post_key("general", T0_MS + n, _id(n)) for n in range(1, 13)}
    mine = [keys[n] for n in keys if n != 4]
    theirs = [keys[n] for n in keys if n != 9]
    init = Initiator(KeyIndex(mine), ["general"])
    responder = KeyIndex(theirs)
    messages = []
    msg: bytes | None = init.initiate()
    while msg is not None:
        reply = respond(responder, msg)
        messages.append({"initiator": msg.hex(), "responder": reply.hex()})
        msg = init.reconcile(reply)
    conversation = {
        "boards": ["general"],
        "initiator_keys": sorted(k.hex() for k in mine),
        "responder_keys": sorted(k.hex() for k in theirs),
        "messages": messages,
        "have": sorted(i.hex() for i in init.have),
        "need": sorted(i.hex() for i in init.need),
    }
    return {"source": SOURCE, "indexes": indexes, "symbols": symbols, "conversation": conversation}


def main() -> int:
    text = json.dumps(build(), indent=1, sort_keys=True) + "\n"
    if "--check" in sys.argv:
        if not OUT.exists() or OUT.read_text() != text:
            print(f"{OUT} is out of date: run {Path(__file__).name}", file=sys.stderr)
            return 1
        return 0
    OUT.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
