"""The language form at the bottom of every page (``POST /lang``)."""

from __future__ import annotations

from aiohttp import web

from ..base import LANG_COOKIE, redirect
from ..i18n import parse_language
from .common import field, next_location

__all__ = ["set_language"]


async def set_language(request: web.Request) -> web.Response:
    response = redirect(next_location(request, "/"))
    language = parse_language(field(request, "lang"))
    if language is None:
        response.del_cookie(LANG_COOKIE, path="/")
    else:
        response.set_cookie(LANG_COOKIE, language, max_age=365 * 24 * 3600, httponly=True, samesite="Strict",
                            path="/")
    return response
