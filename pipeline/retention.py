"""What retention prunes: each table's writer declares a `Prune` (its own DELETE of one batch, in its module),
and the reaper's retention pass (workers/retention.py) runs them with the ages from settings.

A batch is the oldest `:batch` rows older than `:older_than_s` seconds, taken with FOR UPDATE SKIP LOCKED: a
row a step holds is left for a later pass, so pruning never waits on the saga, and the saga never waits long
on pruning (one short transaction per batch).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import TextClause, text


@dataclass(frozen=True)
class Prune:
    """One table's retention: the DELETE of a batch, and the column whose age it goes by."""

    table: str
    age_column: str
    setting: str  # the Settings field with the age after which its rows go
    delete_batch: TextClause  # parameters :older_than_s and :batch

    @property
    def oldest_age_s(self) -> TextClause:
        """The age in seconds of the table's oldest row, 0 if it is empty (one end of the age column's index)."""
        return text(f"SELECT COALESCE(extract(epoch FROM now() - min({self.age_column})), 0) FROM {self.table}")
