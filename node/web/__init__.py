"""The member web UI: server-rendered pages on their own listener (``ui_listen``), never on
the gossip listener.  docs/web-ui.md is the member's guide and its security model."""

from .app import UI, WebUI, make_ui_app

__all__ = ["make_ui_app", "UI", "WebUI"]
