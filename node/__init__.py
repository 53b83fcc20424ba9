"""dazibao's node: the shell around the protocol -- SQLite, HTTP, clock, command line."""

__version__ = "0.1.0"
