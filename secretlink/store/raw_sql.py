"""Statements compiled once and run on a raw DB-API cursor, for the writer's hot path.

The group commit's writer runs a few statements for every batch of messages inside
its transaction (secretlink.store.group_commit). Going through SQLAlchemy's
execution layer there costs more than the statements themselves, and the writer
holds the database's write lock meanwhile; so they are compiled once for the
engine's driver and run on the transaction's own cursor.
"""

from sqlalchemy.engine import Dialect


class Compiled:
    """A statement compiled once for the driver. `parameters(**values)` gives the
    driver's parameters: each bound value passed through its type's own conversion
    (a datetime as SQLite's text, exactly as SQLAlchemy stores it), and literals of
    the statement (such as a row id written into it) filled in."""

    def __init__(self, statement, dialect: Dialect):
        compiled = statement.compile(dialect=dialect)
        self.sql = str(compiled)
        self.positional = compiled.positional
        self.order = tuple(compiled.positiontup or ())
        self.constants = dict(compiled.params)
        self.converters = {}
        for name, bind in compiled.binds.items():
            convert = bind_processor(bind.type, dialect)
            if convert is not None:
                self.converters[name] = convert

    def parameters(self, **values):
        values = {**self.constants, **values}
        values = {name: self.converters.get(name, _same)(value) for name, value in values.items()}
        return tuple(values[name] for name in self.order) if self.positional else values


def _same(value):
    return value


def bind_processor(type_, dialect: Dialect):
    """The conversion the dialect applies to a value of this type before the driver
    sees it, or None. Asked of the dialect's own implementation of the type: the
    generic DateTime has none, SQLite's DATETIME writes its text format."""
    return dialect.type_descriptor(type_).bind_processor(dialect)
