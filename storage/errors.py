"""The one exception family for errors a user can cause.

A `ThresherError` (a bad path, column, value, query or a damaged store) is what
the command line prints as one `thresher: error:` line with exit code 2, and
what the curate flow does not retry: it would fail the same way again. Any
other exception is a bug in thresher: the command line shows its traceback and
the flow retries it. The classes subclass `ValueError` so that code written
against the earlier `ValueError` contract keeps working.

This module imports nothing, so every layer (scoring and selection included)
can raise these without loading the store.
"""

from __future__ import annotations


class ThresherError(ValueError):
    """An error the user can fix; the message names the file, column, key or value."""


class ConfigError(ThresherError):
    """A config that cannot run; the message names the file and the key."""


class SourceError(ThresherError):
    """A source file that cannot be read; the message names the file."""


class StoreError(ThresherError):
    """A store that is missing, damaged or busy; the message names the file and the fix."""


class QueryError(ThresherError):
    """SQL the store refuses: a write, a path outside the store, or a syntax error."""
