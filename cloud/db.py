"""Engines and migrations: SQLite (embedded default) and PostgreSQL behave alike for the store.

SQLite: WAL, a busy timeout, and every transaction opened with BEGIN IMMEDIATE so writers
queue on the database lock instead of failing half-way (pysqlite's own BEGIN is deferred).
PostgreSQL (psycopg 3): a statement timeout bounds any request's time in the database.
"""
import os

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from psycopg.types.array import ListBinaryDumper
from psycopg.types.numeric import Int8BinaryDumper, Int8Dumper
from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import make_url

MIGRATIONS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "migrations")
SQLITE_BUSY_S = 30
PG_STATEMENT_TIMEOUT_MS = 30000
PG_MIGRATION_LOCK = 0x666c656574   # advisory lock id: one migrating process at a time


def database_url(target):
    """A SQLAlchemy URL from a URL or a plain file path (a path means SQLite)."""
    if "://" in target:
        url = make_url(target)
        if url.drivername in ("postgresql", "postgres"):
            url = url.set(drivername="postgresql+psycopg")
        return url
    return make_url("sqlite:///" + os.path.abspath(target))


def make_engine(target, pool_size=8):
    url = database_url(target)
    if url.get_backend_name() == "sqlite":
        engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_S, "check_same_thread": False},
                               pool_size=pool_size, max_overflow=pool_size)

        @event.listens_for(engine, "connect")
        def _sqlite_connect(dbapi_conn, _record):
            dbapi_conn.isolation_level = None       # we issue BEGIN ourselves
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn):
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    if url.get_backend_name() == "postgresql":
        engine = create_engine(url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True,
                               connect_args={"options": "-c statement_timeout=%d" % PG_STATEMENT_TIMEOUT_MS})

        @event.listens_for(engine, "connect")
        def _pg_connect(dbapi_conn, _record):
            # psycopg sends a Python int as int2, int4 or int8 by its value, and a prepared
            # statement is per parameter types: one type keeps each statement prepared once.
            adapters = dbapi_conn.adapters
            adapters.register_dumper(int, Int8Dumper)
            adapters.register_dumper(int, Int8BinaryDumper)
            # Arrays in binary: the text form escapes every element with a regular expression,
            # which costs more than the database's work on a group's rows (cloud/ingest_group.py).
            adapters.register_dumper(list, ListBinaryDumper)

        return engine
    raise ValueError("unsupported database %r: use sqlite:///PATH or postgresql://..." % url.drivername)


def _alembic_config():
    cfg = Config()
    cfg.set_main_option("script_location", MIGRATIONS)
    return cfg


def head():
    return ScriptDirectory.from_config(_alembic_config()).get_current_head()


def current(engine):
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine, revision="head"):
    """Bring the database to `revision`; safe when several processes start at once."""
    cfg = _alembic_config()
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": PG_MIGRATION_LOCK})
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


def downgrade(engine, revision):
    cfg = _alembic_config()
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": PG_MIGRATION_LOCK})
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, revision)
