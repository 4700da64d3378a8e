"""Database failures sorted like every other: a lost connection or a lost race is retried, a bug is not.

A constraint violation or a malformed statement fails the same way on every retry: retrying it only holds
the order's stock for minutes before it fails anyway. Connection loss, serialization failures and
deadlocks are the database asking us to try again.
"""

from __future__ import annotations

from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, ProgrammingError

from pipeline.errors import DatabaseBug

# SQLSTATE classes that are the statement's own fault: data exceptions, integrity violations, syntax or access.
_BUG_CLASSES = ("22", "23", "42")


def database_bug(error: BaseException) -> DatabaseBug | None:
    """The error as a DatabaseBug when no retry can fix it; None for anything else (retried as transient)."""
    if not isinstance(error, DBAPIError) or error.connection_invalidated:
        return None
    sqlstate = str(getattr(error.orig, "sqlstate", "") or "")
    if isinstance(error, (IntegrityError, DataError, ProgrammingError)) or sqlstate[:2] in _BUG_CLASSES:
        kind = type(error.orig).__name__ if error.orig is not None else type(error).__name__
        return DatabaseBug(f"a database statement failed ({kind}, SQLSTATE {sqlstate or 'unknown'})", sqlstate=sqlstate)
    return None
