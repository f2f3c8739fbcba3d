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
        self._spend = _Raw(
            insert(used_nonces)
            .values(nonce=bindparam("nonce"), expires_at=bindparam("expires_at"))
            .on_conflict_do_nothing(index_elements=[used_nonces.c.nonce]),
            dialect,
            used_nonces,
        )
        self._unspend = _Raw(
            delete(used_nonces).where(used_nonces.c.nonce == bindparam("nonce")),
            dialect,
            used_nonces,
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


class _Raw:
    """A statement compiled once for the driver, with the columns' own conversions of
    bound values (a datetime as SQLite's text, exactly as SQLAlchemy stores it)."""

    def __init__(self, statement, dialect: Dialect, table: Table):
        compiled = statement.compile(dialect=dialect)
        self.sql = str(compiled)
        self.positional = compiled.positional
        self.order = tuple(compiled.positiontup or ())
        self.converters = {}
        for name in ("nonce", "expires_at"):
            convert = table.c[name].type.bind_processor(dialect)
            if convert is not None:
                self.converters[name] = convert

    def parameters(self, **values):
        values = {name: self.converters.get(name, _same)(value) for name, value in values.items()}
        return tuple(values[name] for name in self.order) if self.positional else values


def _same(value):
    return value
