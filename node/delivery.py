"""A sign-on letter's delivery folder: what an organizer hands to its recipient (a labor bureau,
a newspaper, a company's board) so that they can read it, and check it, offline.

``dazibao letter deliver ID FOLDER`` writes:

* ``letter.html``: the letter, the count of signatures (all pseudonyms, and those vouched for
  by the moderators this node follows, named by key), and every signature with its public line,
  date and id.  One file, no script, no outside resource: it opens from a USB stick.
* ``letter.dzb``: a bundle (docs/bundles.md) of the signed objects themselves: the letter, its
  signatures, the signers' profiles on the board and the moderators' vouch statements.  Every
  byte is signed; nothing in the HTML needs to be believed.
* ``signatures.csv``: one row per signer, for a spreadsheet.
* ``VERIFY.txt``: how to check the bundle with `dazibao import` on an empty node, in English and
  Chinese, and the bundle's SHA-256.

The folder is written under a temporary name beside the target and renamed into place when
complete, so a half-written folder is never left behind under the final name.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import shutil
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import jinja2

from dazibao.protocol import bundle
from dazibao.protocol.identity import fingerprint

from .store import Store

__all__ = ["DeliveryError", "Delivered", "deliver_letter"]


class DeliveryError(Exception):
    """The folder cannot be written (it exists and is not empty, no such letter, a disk error)."""


@dataclass(frozen=True, slots=True)
class Delivered:
    """What :func:`deliver_letter` wrote."""

    folder: Path
    letter_id: bytes
    signatures: int
    vouched: int
    objects: int
    bundle_sha256: str


_HTML = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined).from_string("""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ title }}</title>
<style>
body { font: 16px/1.5 system-ui, sans-serif; max-width: 46rem; margin: 2rem auto; padding: 0 1rem; color: #1a1a1a; }
h1 { font-size: 1.6rem; } .text { white-space: pre-wrap; } .meta { color: #555; font-size: .9rem; }
table { border-collapse: collapse; width: 100%; font-size: .9rem; } td, th { border-bottom: 1px solid #bbb;
padding: .3rem .4rem; text-align: left; vertical-align: top; } code { font-size: .8rem; word-break: break-all; }
.count { font-size: 1.2rem; font-weight: 600; }
</style>
</head>
<body>
<main>
<h1>{{ title }}</h1>
<p class="meta">Letter <code>{{ letter_id }}</code>, signed by pseudonym {{ author_name }}
(<code>{{ author_fp }}</code>) on {{ letter_at }} · <span lang="zh">联名信</span></p>
<div class="text" lang="">{{ text }}</div>
<h2>Signatures · <span lang="zh">签名</span></h2>
<p class="count">{{ total }} pseudonyms signed{% if not complete %} (at least){% endif %};
{{ vouched }} of them vouched for · <span lang="zh">{{ total }} 个化名签名，其中 {{ vouched }} 个经过担保</span></p>
<p class="meta">Anyone can create many pseudonyms. "Vouched" counts the signers that these moderators,
followed by the node that wrote this folder, vouch for on board {{ board }}:
{% for m in moderators %}<code>{{ m }}</code>{% if not loop.last %}, {% endif %}{% else %}none{% endfor %}.
<span lang="zh">任何人都可以创建许多化名；“经过担保”只计算上述版主担保过的签名者。</span></p>
<table>
<thead><tr><th>#</th><th>Name · 名字</th><th>Public line · 公开说明</th><th>Signed · 时间 (UTC)</th>
<th>Vouched · 担保</th><th>Key fingerprint · 密钥指纹</th></tr></thead>
<tbody>
{% for s in signers %}<tr><td>{{ loop.index }}</td><td>{{ s.name }}</td><td>{{ s.line }}</td><td>{{ s.at }}</td>
<td>{{ "yes · 是" if s.vouched else "" }}</td><td><code>{{ s.fp }}</code></td></tr>
{% endfor %}</tbody>
</table>
<p class="meta">Check every signature yourself: see VERIFY.txt beside this file. Written {{ now }} (UTC).</p>
</main>
</body>
</html>
""")

_VERIFY = """How to check this letter and its signatures (offline)
======================================================

letter.dzb holds the letter and every signature as signed objects. Checking them needs only
Python and the dazibao software, and no network once it is installed:

  python -m pip install dazibao
  dazibao --data-dir ./check init --name checker
  dazibao --data-dir ./check import letter.dzb
  dazibao --data-dir ./check letter show {letter_id}

`import` checks every signature and refuses anything altered or forged; `letter show` then
counts the signatures your own node holds. The "vouched" figure depends on whose judgement you
trust: to count as this folder's writer did, follow the same moderators first:

{follow}

SHA-256 of letter.dzb: {sha256}


如何离线核实这封联名信和签名
============================

letter.dzb 包含联名信和每一个签名的原始签名数据。核实只需要 Python 和 dazibao 软件，安装后无需联网：

  python -m pip install dazibao
  dazibao --data-dir ./check init --name checker
  dazibao --data-dir ./check import letter.dzb
  dazibao --data-dir ./check letter show {letter_id}

`import` 会逐一检查签名，拒绝任何被篡改或伪造的内容；`letter show` 统计你自己的节点上的签名。
“经过担保”的数字取决于你信任谁的判断：如要和本文件夹的作者得到相同的数字，请先关注相同的版主（命令见上）。

letter.dzb 的 SHA-256：{sha256}
"""


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M")


def deliver_letter(store: Store, letter_id: bytes, folder: Path, *, now_ms: int) -> Delivered:
    """Write the delivery folder of the letter ``letter_id`` to ``folder`` (which must not
    exist, or be empty).  Raises DeliveryError; writes nothing under ``folder``'s name then."""
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise DeliveryError(f"{folder} exists and is not an empty folder")
    with store.snapshot():
        view = store.letter(letter_id, now_ms=now_ms)
        if view is None:
            raise DeliveryError(f"no letter {letter_id.hex()} here (see `dazibao letter list BOARD`)")
        letter, tally = view.letter, view.signatures
        signers = [row[0] for row in tally.signers]
        names = store.names_on(letter.board, [letter.author, *signers])
        vouches = store.vouches_for(letter.board, signers, now_ms=now_ms)
        trust = store.trust_view(letter.board, now_ms=now_ms)
        raws = [r for r in store.get_raw([letter.id, *(row[3] for row in tally.signers)])]
    vouched = {a for a in signers if trust.vouched(a)}
    objects = [names[a][1] for a in [letter.author, *signers] if a in names] + raws + vouches
    objects = list(dict.fromkeys(objects))  # one copy of each, in this order
    data = bundle.encode_bundle(objects, bundle_id=os.urandom(bundle.BUNDLE_ID_BYTES), created_at_ms=now_ms,
                                boards=[letter.board])
    sha = hashlib.sha256(data).hexdigest()
    moderators = sorted({s.moderator.hex() for s in trust.statements if s.action == "vouch" and s.target in vouched})

    def name(author: bytes) -> str:
        return names[author][0] if author in names else "(no name)"

    rows = [{"name": name(a), "line": line, "at": _iso(at), "vouched": a in vouched, "fp": fingerprint(a),
             "key": a.hex(), "id": sid.hex()} for a, line, at, sid in tally.signers]
    html = _HTML.render(title=letter.title, letter_id=letter.id.hex(), author_name=name(letter.author),
                        author_fp=fingerprint(letter.author), letter_at=_iso(letter.created_at_ms), text=letter.text,
                        total=tally.total, vouched=len(vouched), complete=view.complete, board=letter.board,
                        moderators=moderators, signers=rows, now=_iso(now_ms))
    table = io.StringIO()
    writer = csv.writer(table)
    writer.writerow(["name", "public_line", "signed_at_utc", "vouched", "fingerprint", "public_key", "signature_id"])
    for r in rows:
        writer.writerow([r["name"], r["line"], r["at"], "yes" if r["vouched"] else "no", r["fp"], r["key"], r["id"]])
    follow = "\n".join(f"  dazibao --data-dir ./check moderators add {letter.board} {m}" for m in moderators) or \
        "  (no moderator vouched for a signer)"
    files = {
        "letter.html": html.encode("utf-8"),
        "letter.dzb": data,
        "signatures.csv": table.getvalue().encode("utf-8"),
        "VERIFY.txt": _VERIFY.format(letter_id=letter.id.hex(), follow=follow, sha256=sha).encode("utf-8"),
    }
    _write_folder(folder, files)
    return Delivered(folder, letter.id, tally.total, len(vouched), len(objects), sha)


def _write_folder(folder: Path, files: dict[str, bytes]) -> None:
    parent = folder.parent if str(folder.parent) else Path(".")
    try:
        parent.mkdir(parents=True, exist_ok=True)
        temp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=parent))
    except OSError as exc:
        raise DeliveryError(f"cannot write beside {folder}: {exc.strerror or exc}") from None
    try:
        for name, data in files.items():
            (temp / name).write_bytes(data)
        temp.chmod(0o755)
        if folder.exists():
            folder.rmdir()  # empty, checked above
        temp.rename(folder)
    except OSError as exc:
        shutil.rmtree(temp, ignore_errors=True)
        raise DeliveryError(f"cannot write {folder}: {exc.strerror or exc}") from None
