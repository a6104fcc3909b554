"""Alembic environment: runs on the connection `narratives.store.db.migrate` hands over."""

from alembic import context

from narratives.store.db import include_object
from narratives.store.schema import metadata

target_metadata = metadata
connection = context.config.attributes.get("connection")

if connection is None:
    from narratives.store.db import create_engine

    connection = create_engine(context.config.get_main_option("sqlalchemy.url")).connect()


context.configure(
    connection=connection,
    target_metadata=target_metadata,
    include_object=include_object,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
