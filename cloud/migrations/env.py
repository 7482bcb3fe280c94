"""Alembic environment: runs on the connection cloud.db.upgrade hands over, else on the URL
of `sqlalchemy.url` (plain `alembic -c ...` use)."""
from alembic import context
from sqlalchemy import create_engine

from cloud.schema import metadata


def run():
    connection = context.config.attributes.get("connection")
    if connection is None:
        engine = create_engine(context.config.get_main_option("sqlalchemy.url"))
        with engine.begin() as connection:
            _migrate(connection)
        engine.dispose()
    else:
        _migrate(connection)


def _migrate(connection):
    # render_as_batch: SQLite alters tables by copying them; batch mode does that for it.
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


run()
