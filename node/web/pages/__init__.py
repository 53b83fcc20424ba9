"""The member UI's pages, one module per page (or a few pages that belong together).

Each module holds the GET and POST handlers of its page; node/web/app.py routes them (and
node/web/public.py the reading ones), and :mod:`.common` holds what they share.  A page
module imports :mod:`.common` and node/web/base.py, never node/web/app.py, so that the
application and its pages import in one direction only.
"""
