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

_LINE_BREAKS = "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"  # what str.splitlines splits at


class ThresherError(ValueError):
    """An error the user can fix; the message names the file, column, key or value.

    The message is one line: a line break inside it (a JSON key or an Arrow type
    naming a field "\\n", a value quoted from the source) is written as its escape."""

    def __init__(self, *args: object) -> None:
        if len(args) == 1 and isinstance(args[0], str):
            text = args[0]
            if any(c in text for c in _LINE_BREAKS):
                text = "".join(
                    c.encode("unicode_escape").decode() if c in _LINE_BREAKS else c for c in text
                )
            args = (text,)
        super().__init__(*args)


class ConfigError(ThresherError):
    """A config that cannot run; the message names the file and the key."""


class SourceError(ThresherError):
    """A source file that cannot be read; the message names the file."""


class StoreError(ThresherError):
    """A store that is missing, damaged or busy; the message names the file and the fix."""


class QueryError(ThresherError):
    """SQL the store refuses: a write, a path outside the store, or a syntax error."""
