"""Database failures sorted like every other: a lost connection or a lost race is retried, a bug is not.

A constraint violation or a malformed statement fails the same way on every retry: retrying it only holds
the order's stock for minutes before it fails anyway. Connection loss, serialization failures and
deadlocks are the database asking us to try again.
"""

from __future__ import annotations

import psycopg
from sqlalchemy.exc import DBAPIError

from pipeline.errors import DatabaseBug

# SQLSTATE classes that are the statement's own fault: data exceptions, integrity violations, syntax or access.
_BUG_CLASSES = ("22", "23", "42")


def database_bug(error: BaseException) -> DatabaseBug | None:
    """The error as a DatabaseBug when no retry can fix it; None for anything else (retried as transient).

    The error is psycopg's own (the hot path's statements, `models.db.run`) or SQLAlchemy's wrapping of it.
    """
    if isinstance(error, DBAPIError):
        if error.connection_invalidated:
            return None
        error = error.orig if error.orig is not None else error
    if not isinstance(error, psycopg.Error | DBAPIError):
        return None
    sqlstate = str(getattr(error, "sqlstate", "") or "")
    bug_kind = (psycopg.IntegrityError, psycopg.DataError, psycopg.ProgrammingError)
    if isinstance(error, bug_kind) or sqlstate[:2] in _BUG_CLASSES:
        kind = type(error).__name__
        return DatabaseBug(f"a database statement failed ({kind}, SQLSTATE {sqlstate or 'unknown'})", sqlstate=sqlstate)
    return None
