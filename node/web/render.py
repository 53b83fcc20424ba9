"""Post bodies and search snippets as HTML: the one place where text from strangers becomes markup.

A body is written in a small subset of Markdown (docs/web-ui.md, "Formatting"): paragraphs
and line breaks, *emphasis* and **strong**, links to http(s) addresses, > quotes, `code` and
code blocks, and lists.  It is parsed by markdown-it-py (a CommonMark parser) with raw HTML
and images switched off and every other rule not in the subset left disabled, then the HTML
it produces is passed through nh3 (the ammonia sanitizer) with an allowlist of exactly the
tags and attributes the subset produces, as a second, independent line of defence: a bug in
either one alone does not let markup through.

Search snippets are plain text with highlight spans; :func:`highlight` escapes every segment
and wraps the spans in ``<mark>``, so nothing in a snippet is ever read as markup.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Sequence

import nh3
from markdown_it import MarkdownIt
from markdown_it.renderer import RendererHTML
from markdown_it.token import Token
from markdown_it.utils import EnvType, OptionsDict
from markupsafe import Markup, escape

__all__ = ["render_body", "render_body_uncached", "highlight", "title_of", "ALLOWED_TAGS", "LINK_REL"]

LINK_REL = "noopener noreferrer nofollow"

#: Everything the formatting subset can produce; nh3 drops any other tag (keeping its text).
ALLOWED_TAGS = frozenset({"p", "br", "em", "strong", "a", "blockquote", "code", "pre", "ul", "ol", "li"})

# Only absolute http(s) links: no javascript:, data:, vbscript:, file:, mailto:, no relative or
# protocol-relative addresses (which would point into this UI or be resolved against it).
_HTTP_URL = re.compile(r"^https?://[^/\\\s]", re.IGNORECASE)

_BLOCK_RULES = ["paragraph", "blockquote", "code", "fence", "list"]
_INLINE_RULES = ["text", "newline", "escape", "backticks", "emphasis", "link", "autolink", "entity", "linkify"]
_MAX_TITLE_CHARS = 100
_TITLE_MARKERS = re.compile(r"^(?:[#>*+\-\s]|\d+[.)]\s)+")


def _http_only(url: str) -> bool:
    return bool(_HTTP_URL.match(url))


def _link_open(self: RendererHTML, tokens: Sequence[Token], idx: int, options: OptionsDict, env: EnvType) -> str:
    tokens[idx].attrSet("rel", LINK_REL)
    tokens[idx].attrSet("target", "_blank")
    return self.renderToken(tokens, idx, options, env)


def _make_parser() -> MarkdownIt:
    # "zero" enables nothing but plain paragraphs; the subset is switched on rule by rule, so
    # a new rule in a later markdown-it-py (tables, images, raw HTML...) stays off.
    md = MarkdownIt("zero", {"html": False, "linkify": True, "breaks": True, "typographer": False})
    md.enable(_BLOCK_RULES + _INLINE_RULES + ["linkify"])
    md.disable(["image", "html_inline", "html_block"], ignoreInvalid=True)
    # Bare addresses become links only with an explicit http:// or https://: "report.zip" or
    # "name@example.org" stay text.
    assert md.linkify is not None  # "linkify": True above
    md.linkify.set({"fuzzy_link": False, "fuzzy_email": False, "fuzzy_ip": False})
    # markdown-it-py's documented way to change which link targets are allowed.
    md.validateLink = _http_only  # type: ignore[method-assign]
    md.add_render_rule("link_open", _link_open)
    return md


_PARSER = _make_parser()
_CLEANER = nh3.Cleaner(
    tags=set(ALLOWED_TAGS),
    clean_content_tags={"script", "style"},
    attributes={"a": {"href", "title"}, "ol": {"start"}},
    tag_attribute_values={"a": {"target": {"_blank"}}},
    link_rel=LINK_REL,
    url_schemes={"http", "https"},
    url_relative="deny",
    strip_comments=True,
)


def render_body_uncached(body: str) -> Markup:
    """The HTML of a post body in the formatting subset, rendered now (pages keep it by post
    id: node/web/bodycache.py).  Never raises for any text."""
    return Markup(_CLEANER.clean(_PARSER.render(body)))


@functools.lru_cache(maxsize=512)
def render_body(body: str) -> Markup:
    """The HTML of a post body in the formatting subset.  Never raises for any text."""
    return render_body_uncached(body)


def highlight(snippet: str, spans: Iterable[tuple[int, int]]) -> Markup:
    """``snippet`` as HTML with each ``(start, end)`` code-point span wrapped in ``<mark>``.

    Every piece of text is escaped on its own; spans that overlap, run backwards or fall
    outside the snippet are clipped or skipped rather than trusted.
    """
    parts: list[Markup] = []
    pos = 0
    for start, end in spans:
        start, end = max(int(start), pos), min(int(end), len(snippet))
        if start >= end:
            continue
        parts.append(escape(snippet[pos:start]))
        parts.append(Markup("<mark>%s</mark>") % snippet[start:end])
        pos = end
    parts.append(escape(snippet[pos:]))
    return Markup("").join(parts)


def title_of(body: str, max_chars: int = _MAX_TITLE_CHARS) -> str:
    """A one-line plain-text title for a post: its first non-blank line, shortened."""
    for line in body.splitlines():
        line = _TITLE_MARKERS.sub("", line).strip()
        if line:
            return line if len(line) <= max_chars else line[: max_chars - 1].rstrip() + "…"
    return body.strip()[:max_chars]
