"""`dazibao publish`: a static, read-only HTML copy of chosen boards, with their bundle beside it.

The folder works from any static web host or straight from a disk (``file://``): every link is
relative, there is no script, and nothing is requested from anywhere but the folder itself (a
Content-Security-Policy meta tag allows only the local stylesheet).  It shows what the public
view shows: post bodies in the same formatting subset, rendered and sanitized by the one
renderer of the web UI (node/web/render.py), and each author's published name (as the public
view resolves it: the latest profile post, marked when another key uses the same name) beside
the fingerprint.  Every post shows its id; the index page says how to check the copy by
importing the bundle into a node.  The copy's words are English or Chinese (``lang``, see
node/publish_text.py); each body is marked ``lang="zh"`` when it is Chinese text.

Files, all in the one folder (flat, so that relative links never need ``../``)::

    index.html                 the boards, and how to verify the copy
    style.css                  the only stylesheet
    posts.dzb                  the bundle of the published boards (docs/bundles.md)
    board-<slug>.html          a board's threads, latest activity first (-2, -3 ... for more pages)
    thread-<id>.html           one thread: the post and its replies, as a tree, with translations
    companies-<slug>.html ...  the board's company reports, letters and pledges, with a CSV and a
                               JSON of the reports (node/publish_organizing.py)
    .dazibao-publish.json      the manifest: which files this program wrote

Publishing again updates the folder in place: each file is replaced atomically (a temporary
file, then a rename), files that did not change are left alone, and files of the previous
copy that are no longer part of it (threads whose post was retracted or purged) are removed.
Only files named in the manifest are ever removed, and only names this module makes are
accepted there, so nothing outside the folder, and nothing in it that another program put
there, is touched.  A non-empty folder without a manifest is refused.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
import re
import tempfile
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup, escape

from dazibao.protocol import posts
from dazibao.protocol.errors import RemoteProtocolError

from . import __version__
from .bundles import BundleFileError, export_bundle
from .publish_organizing import NAME_PATTERNS, Organizing, read_organizing, translation_views, write_organizing
from .publish_text import LANGUAGES, callables
from .store import PostRow, Store
from .web import textlang
from .web.authors import AuthorView, read_author_views
from .web.render import render_body, title_of

__all__ = ["PublishError", "PublishReport", "publish", "board_slug", "MANIFEST_NAME", "BUNDLE_NAME"]

MANIFEST_NAME = ".dazibao-publish.json"
BUNDLE_NAME = "posts.dzb"
STYLE_NAME = "style.css"
THREADS_PER_PAGE = 50
EXCERPT_CHARS = 280
MAX_DEPTH = 6  # deeper replies are drawn at this indentation
CSP = "default-src 'none'; style-src 'self'; img-src 'none'; base-uri 'none'; form-action 'none'"
_MANIFEST_MARK = "dazibao publish"
_NAME_OK = re.compile(
    r"index\.html|style\.css|posts\.dzb|board-[a-z0-9-]{1,80}\.html|thread-[0-9a-f]{64}\.html|"
    + "|".join(NAME_PATTERNS)
)
_TEMPLATES = Path(__file__).resolve().parent / "publish_templates"


class PublishError(Exception):
    """The copy cannot be written where or as asked; the message says why.  Nothing was removed."""


@dataclass
class PublishReport:
    out_dir: Path
    boards: list[str]
    posts: int
    threads: int
    written: int  # files created or changed
    unchanged: int
    removed: list[str]
    bundle_posts: int

    def as_dict(self) -> dict[str, Any]:
        return {"out": str(self.out_dir), "boards": self.boards, "posts": self.posts, "threads": self.threads,
                "written": self.written, "unchanged": self.unchanged, "removed": self.removed,
                "bundle_posts": self.bundle_posts, "bundle": BUNDLE_NAME}


# --- naming and rendering helpers -----------------------------------------------------------


def board_slug(board: str) -> str:
    """A file-name-safe, case-insensitively unique name for a board: ``Labor 2`` -> ``labor-2-1c0d…``.

    The ASCII letters and digits of the name (for people), then 10 hex digits of its SHA-256
    (so that ``General`` and ``general``, or two Chinese names, never share a file).
    """
    ascii_part = unicodedata.normalize("NFKD", board).encode("ascii", "ignore").decode("ascii").lower()
    words = re.findall(r"[a-z0-9]+", ascii_part)
    readable = "-".join(words)[:40].strip("-")
    digest = hashlib.sha256(board.encode("utf-8")).hexdigest()[:10]
    return f"{readable}-{digest}" if readable else digest


def _board_page(slug: str, page: int) -> str:
    return f"board-{slug}.html" if page == 1 else f"board-{slug}-{page}.html"


def _thread_page(thread_id: bytes) -> str:
    return f"thread-{thread_id.hex()}.html"


_BLANK_LINES = re.compile(r"\n[ \t]*\n[ \t\n]*")


def paragraphs(body: str) -> Markup:
    """Plain text as HTML: blank lines separate paragraphs, single newlines become <br>.

    Everything is escaped; nothing in the text is read as markup or as a link.
    """
    out = []
    for para in _BLANK_LINES.split(body.strip("\n")):
        if para.strip():
            out.append(Markup("<p>") + Markup("<br>").join(escape(line) for line in para.split("\n")) + Markup("</p>"))
    return Markup("\n").join(out)


def _excerpt(body: str) -> str:
    text = " ".join(body.split())
    return text if len(text) <= EXCERPT_CHARS else text[: EXCERPT_CHARS - 1].rstrip() + "…"


@dataclass(frozen=True)
class _When:
    iso: str
    text: str


def _when(ms: int) -> _When:
    moment = dt.datetime.fromtimestamp(ms / 1000, dt.UTC)
    return _When(moment.strftime("%Y-%m-%dT%H:%M:%SZ"), moment.strftime("%Y-%m-%d %H:%M UTC"))


def _environment(lang: str) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(_TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        extensions=["jinja2.ext.i18n"],
    )
    gettext, ngettext = callables(lang)
    # Added by the i18n extension at run time, so the type stubs do not know it.
    env.install_gettext_callables(gettext, ngettext, newstyle=True)  # type: ignore[attr-defined]
    env.filters["paragraphs"] = paragraphs
    env.filters["body"] = render_body
    env.filters["langattr"] = textlang.lang_attr
    env.filters["num"] = textlang.number
    return env


# --- the model of one board -----------------------------------------------------------------


@dataclass
class _Thread:
    id: bytes  # the root post's id; for replies whose root is not here, the missing post's id
    root: PostRow | None = None
    members: list[bytes] = field(default_factory=list)  # replies, in key order
    first_reply_excerpt: str = ""
    last_at_ms: int = 0


@dataclass
class _Board:
    name: str
    slug: str
    threads: list[_Thread]
    posts: int
    latest_ms: int | None


def _model_board(store: Store, board: str) -> _Board:
    """Group a board's posts and replies into threads, reading the board once."""
    parents: dict[bytes, bytes | None] = {}  # id -> parent (None for a top-level post)
    threads: dict[bytes, _Thread] = {}
    replies: list[tuple[bytes, int, str]] = []  # (id, created, excerpt) in key order
    count = 0
    latest = None
    for row in store.iter_rows([board]):
        if row.kind == posts.KIND_POST:
            parents[row.id] = None
            threads[row.id] = _Thread(row.id, root=_light(row), last_at_ms=row.created_at_ms)
        elif row.kind == posts.KIND_REPLY:
            parents[row.id] = row.parent
            replies.append((row.id, row.created_at_ms, _excerpt(row.body)))
        else:
            continue  # retractions and profiles are not shown
        count += 1
        latest = row.created_at_ms if latest is None else max(latest, row.created_at_ms)
    roots: dict[bytes, bytes] = {}

    def root_of(pid: bytes) -> bytes:
        # Walk up the parents present on this board; a walk that leaves the board (or meets a
        # cycle, which hashing makes impossible) ends at the first id not here.
        path = []
        seen = set()
        node = pid
        while node in parents and parents[node] is not None and node not in roots and node not in seen:
            seen.add(node)
            path.append(node)
            node = parents[node]  # type: ignore[assignment]
        top = roots.get(node, node)
        for item in path:
            roots[item] = top
        return top

    for pid, created, excerpt in replies:
        top = root_of(pid)
        thread = threads.get(top)
        if thread is None:
            thread = threads[top] = _Thread(top, first_reply_excerpt=excerpt)
        thread.members.append(pid)
        thread.last_at_ms = max(thread.last_at_ms, created)
    ordered = sorted(threads.values(), key=lambda t: (-t.last_at_ms, t.id))
    return _Board(board, board_slug(board), ordered, count, latest)


def _light(row: PostRow) -> PostRow:
    # Board pages need only an excerpt of each root: drop the rest of a long body and the raw
    # bytes, so that a large board's model stays small.
    return PostRow(row.seq, row.id, row.kind, row.board, row.author, row.created_at_ms, row.parent,
                   _excerpt(row.body), b"", row.received_at_ms, row.source)


def _post_view(row: PostRow, here: set[bytes], author: AuthorView) -> dict[str, Any]:
    when = _when(row.created_at_ms)
    return {
        "id": row.id.hex(), "kind": row.kind, "author": author,
        "iso": when.iso, "when": when.text, "body": row.body,
        "parent": row.parent.hex() if row.parent else None, "parent_here": row.parent in here,
    }


# --- the folder -----------------------------------------------------------------------------


class _Folder:
    """The output folder: its manifest, and atomic writes of flat file names inside it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.old: set[str] = set()
        self.written = 0
        self.unchanged = 0

    def prepare(self) -> None:
        root = self.root
        if root.exists() and not root.is_dir():
            raise PublishError(f"{root} exists and is not a folder")
        if not root.exists():
            try:
                root.mkdir(parents=True, mode=0o755)
            except OSError as exc:
                raise PublishError(f"cannot create {root}: {exc.strerror or exc}") from None
            return
        manifest = root / MANIFEST_NAME
        try:
            entries = [p.name for p in root.iterdir()]
        except OSError as exc:
            raise PublishError(f"cannot read {root}: {exc.strerror or exc}") from None
        if not entries:
            return
        if MANIFEST_NAME not in entries or manifest.is_symlink() or not manifest.is_file():
            raise PublishError(
                f"{root} is not empty and is not a previous `dazibao publish` output: "
                "choose a new or empty folder"
            )
        try:
            data = json.loads(manifest.read_text(encoding="utf-8"))
            files = data["files"]
            ok = data.get("generator") == _MANIFEST_MARK and isinstance(files, list)
        except (OSError, ValueError, KeyError, TypeError, UnicodeDecodeError):
            ok = False
        if not ok or not all(isinstance(n, str) and _NAME_OK.fullmatch(n) for n in files):
            raise PublishError(f"{manifest} is damaged or was not written by dazibao; refusing to touch {root}")
        self.old = set(files)

    def write_manifest(self, names: Iterable[str]) -> None:
        data = {"generator": _MANIFEST_MARK, "version": 1, "files": sorted(set(names))}
        self.write(MANIFEST_NAME, (json.dumps(data, indent=1) + "\n").encode("utf-8"), durable=True, count=False)

    def write(self, name: str, data: bytes, *, durable: bool = False, count: bool = True) -> None:
        path = self.root / name
        try:
            if path.is_file() and not path.is_symlink() and path.stat().st_size == len(data) \
                    and path.read_bytes() == data:
                self.unchanged += count
                return
            fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=self.root)
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(data)
                    if durable:
                        fh.flush()
                        os.fsync(fh.fileno())
                os.chmod(tmp, 0o644)
                os.replace(tmp, path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
        except OSError as exc:
            raise PublishError(f"cannot write {path}: {exc.strerror or exc}") from None
        self.written += count

    def remove(self, names: Iterable[str]) -> list[str]:
        removed = []
        for name in sorted(names):
            # Only flat names this module makes (checked when the manifest was read), inside
            # the folder; unlink removes a symbolic link itself, never what it points to.
            assert _NAME_OK.fullmatch(name)
            path = self.root / name
            try:
                if path.is_symlink() or path.is_file():
                    path.unlink()
                    removed.append(name)
            except OSError as exc:
                raise PublishError(f"cannot remove {path}: {exc.strerror or exc}") from None
        return removed


# --- publish --------------------------------------------------------------------------------


def publish(store: Store, out_dir: Path, boards: Sequence[str], *, now_ms: int, bundle_id: bytes | None = None,
            progress: Callable[[int], None] | None = None, lang: str = "en") -> PublishReport:
    """Write (or update) the static copy of ``boards`` in ``out_dir``.  See the module docstring.

    ``lang`` is the copy's language: ``en`` or ``zh`` (Simplified Chinese).  ``progress`` is
    called with 1 per page written.  Raises PublishError for an unknown language, a board name
    that breaks the board-name rule, a folder that is not empty and not a previous copy, or a
    file that cannot be written; StoreError for the database.
    """
    if lang not in LANGUAGES:
        raise PublishError(f"unknown language {lang!r}: use one of {', '.join(LANGUAGES)}")
    if not boards:
        raise PublishError("name at least one board to publish")
    chosen: list[str] = []
    for board in boards:
        try:
            posts.check_board(board)
        except RemoteProtocolError as exc:
            raise PublishError(f"board {board!r}: {exc.message}") from None
        if board not in chosen:
            chosen.append(board)
    folder = _Folder(out_dir)
    folder.prepare()
    env = _environment(lang)
    generated = _when(now_ms)
    common = {"csp": Markup(CSP), "version": __version__, "generated": generated, "bundle_name": BUNDLE_NAME,
              "lang": LANGUAGES[lang]}

    def tick() -> None:
        if progress is not None:
            progress(1)

    with store.snapshot():
        authors = read_author_views(store)
        models = [_model_board(store, board) for board in chosen]
        organized = [read_organizing(store, board, now_ms=now_ms, lang=lang) for board in chosen]
        planned = {"index.html", STYLE_NAME, BUNDLE_NAME}
        for model, org in zip(models, organized, strict=True):
            planned.update(org.files(model.slug))
            pages = max(1, -(-len(model.threads) // THREADS_PER_PAGE))
            planned.update(_board_page(model.slug, n) for n in range(1, pages + 1))
            planned.update(_thread_page(t.id) for t in model.threads)
        # Record every name that may exist before writing any, so that an interrupted run
        # still leaves a manifest that covers all of them.
        folder.write_manifest(folder.old | planned)
        folder.write(STYLE_NAME, (_TEMPLATES / STYLE_NAME).read_bytes())
        board_views = []
        for model, org in zip(models, organized, strict=True):
            view = {
                "name": model.name, "href": _board_page(model.slug, 1), "threads": len(model.threads),
                "posts": model.posts, "latest": _when(model.latest_ms) if model.latest_ms is not None else None,
                "slug": model.slug,
            }
            board_views.append(view)
            _write_board(store, folder, env, common, model, view, tick, authors, org)
            write_organizing(store, folder.write, env, common, view, model.slug, org, authors, _when)
            tick()
        try:
            exported = export_bundle(store, out_dir / BUNDLE_NAME, boards=chosen, now_ms=now_ms,
                                     bundle_id=bundle_id, mode=0o644)
        except BundleFileError as exc:
            raise PublishError(str(exc)) from None
        total_posts = sum(m.posts for m in models)
        index = env.get_template("index.html").render(
            common, boards=board_views, total_posts=total_posts, bundle_posts=exported.posts,
            bundle_bytes=exported.bytes,
        )
        folder.write("index.html", index.encode("utf-8"))
        tick()
    folder.write_manifest(planned)
    removed = folder.remove(folder.old - planned)
    return PublishReport(out_dir, chosen, total_posts, sum(len(m.threads) for m in models),
                         folder.written, folder.unchanged, removed, exported.posts)


def _write_board(store: Store, folder: _Folder, env: jinja2.Environment, common: dict[str, Any], model: _Board,
                 board_view: dict[str, Any], tick: Callable[[], None],
                 authors: Callable[[bytes], AuthorView], org: Organizing) -> None:
    board_template = env.get_template("board.html")
    pinned = _pinned_views(store, model, org, authors)
    thread_template = env.get_template("thread.html")
    pages = max(1, -(-len(model.threads) // THREADS_PER_PAGE))
    for number in range(1, pages + 1):
        chunk = model.threads[(number - 1) * THREADS_PER_PAGE : number * THREADS_PER_PAGE]
        items = []
        for thread in chunk:
            root = thread.root
            items.append({
                "href": _thread_page(thread.id),
                "root": None if root is None else {
                    "author": authors(root.author), "id": root.id.hex(),
                    "iso": _when(root.created_at_ms).iso, "when": _when(root.created_at_ms).text,
                },
                "excerpt": root.body if root is not None else thread.first_reply_excerpt,
                "replies": len(thread.members),
                "last": _when(thread.last_at_ms),
            })
        html = board_template.render(
            common, board=board_view, threads=items, page=number, pages=pages, pinned=pinned if number == 1 else [],
            prev_href=_board_page(model.slug, number - 1) if number > 1 else None,
            next_href=_board_page(model.slug, number + 1) if number < pages else None,
        )
        folder.write(_board_page(model.slug, number), html.encode("utf-8"))
        tick()
    for thread in model.threads:
        # Only this board's posts: a reply may answer a post on a board that is not published.
        rows = [row for row in (store.get(pid) for pid in [thread.id, *thread.members])
                if row is not None and row.board == model.name]
        here = {row.id for row in rows}
        children: dict[bytes | None, list[PostRow]] = {}
        root_row = None
        for row in rows:
            if row.id == thread.id:
                root_row = row
            else:
                children.setdefault(row.parent, []).append(row)
        ordered: list[dict[str, Any]] = []
        if root_row is not None:
            ordered.append({"post": _post_view(root_row, here, authors(root_row.author)), "depth": 0,
                            "translations": translation_views(org.translations.get(root_row.id, []), authors,
                                                              _when)})
        # Depth-first, oldest first among siblings; iterative, as a thread may be deep.
        stack = [(child, 1 if root_row is not None else 0) for child in
                 reversed(sorted(children.get(thread.id, []), key=lambda r: (r.created_at_ms, r.id)))]
        while stack:
            row, depth = stack.pop()
            ordered.append({"post": _post_view(row, here, authors(row.author)), "depth": min(depth, MAX_DEPTH),
                            "translations": translation_views(org.translations.get(row.id, []), authors, _when)})
            for child in reversed(sorted(children.get(row.id, []), key=lambda r: (r.created_at_ms, r.id))):
                stack.append((child, depth + 1))
        title = title_of(root_row.body) if root_row is not None else ""
        html = thread_template.render(common, board=board_view, root=root_row is not None,
                                      thread_id=thread.id.hex(), items=ordered, title=title)
        folder.write(_thread_page(thread.id), html.encode("utf-8"))
        tick()


def _pinned_views(store: Store, model: _Board, org: Organizing,
                  authors: Callable[[bytes], AuthorView]) -> list[dict[str, Any]]:
    """The posts pinned on the board by the moderators this node follows, newest pin first, each
    linked to its thread page (a pinned post that is not a thread of this copy is left out)."""
    thread_of = {t.id: t.id for t in model.threads if t.root is not None}
    for t in model.threads:
        thread_of.update((member, t.id) for member in t.members)
    views = []
    for pid in org.pinned:
        row = store.get(pid)
        if row is None or row.board != model.name or pid not in thread_of:
            continue
        href = _thread_page(thread_of[pid]) + ("" if thread_of[pid] == pid else f"#p-{pid.hex()}")
        views.append({"href": href, "id": pid.hex(), "excerpt": _excerpt(row.body), "author": authors(row.author),
                      "when": _when(row.created_at_ms)})
    return views
