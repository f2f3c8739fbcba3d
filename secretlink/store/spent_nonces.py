"""Spending a message's puzzle in the transaction that stores the message.

A puzzle is good for one message. Recording it as spent in a transaction of its own
cost every message a second durable commit (an fsync on SQLite) that no other
message could share: about 300 messages a second at most on the benchmark machine,
a tenth of what the server does otherwise (docs/PERFORMANCE.md, "P1"). Spent here,
inside the group commit's transaction (secretlink.store.group_commit), a batch of
messages spends its puzzles with the same commit that stores them, and a message
refused on the way (its inbox full, say) keeps its puzzle for a later try.

Each spend is an INSERT that does nothing on a conflict, so a puzzle spent by an
earlier transaction, by another worker's concurrent one (PostgreSQL) or by an
earlier message of the same batch is found without aborting the transaction.
"""

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Table, bindparam, delete
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect

from secretlink.store.raw_sql import Compiled


@dataclass(frozen=True)
class Spend:
    """A single-use nonce to record as spent with what it pays for: its stored key (a
    hash, secretlink.store.storage.spent_nonce_key) and when the record may go."""

    key: bytes
    expires_at: datetime


class SpendGate:
    """Records spends on a raw DB-API cursor inside the caller's transaction."""

    def __init__(self, dialect: Dialect, used_nonces: Table):
        insert = postgresql.insert if dialect.name == "postgresql" else sqlite.insert
        self._spend = Compiled(
            insert(used_nonces)
            .values(
                # Typed as the columns, so that the values are stored as SQLAlchemy
                # stores them (an expiry as SQLite's text with microseconds).
                nonce=bindparam("nonce", type_=used_nonces.c.nonce.type),
                expires_at=bindparam("expires_at", type_=used_nonces.c.expires_at.type),
            )
            .on_conflict_do_nothing(index_elements=[used_nonces.c.nonce]),
            dialect,
        )
        self._unspend = Compiled(
            delete(used_nonces).where(used_nonces.c.nonce == bindparam("nonce")),
            dialect,
        )

    def spend(self, cursor, spends: list[Spend | None]) -> list[bool]:
        """Record each spend in order; for each, whether it had been spent already
        (None, a message with the gate off, spends nothing)."""
        used = []
        for spend in spends:
            if spend is None:
                used.append(False)
                continue
            cursor.execute(
                self._spend.sql,
                self._spend.parameters(nonce=spend.key, expires_at=spend.expires_at),
            )
            used.append(cursor.rowcount == 0)
        return used

    def unspend(self, cursor, spends: list[Spend]) -> None:
        """Take back spends this transaction recorded, for messages it then refused."""
        for spend in spends:
            cursor.execute(self._unspend.sql, self._unspend.parameters(nonce=spend.key))
