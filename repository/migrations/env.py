"""Alembic environment: runs on the connection the backend passes in, never on its own."""

from alembic import context
from sqlalchemy.engine import Connection

from repository.sql.tables import metadata

connection = context.config.attributes.get('connection')
if not isinstance(connection, Connection):
    raise TypeError('run migrations through MetadataBackend.migrate(), which passes a connection')

context.configure(
    connection=connection,
    target_metadata=metadata,
    # SQLite cannot ALTER most things; later migrations get batch mode there
    render_as_batch=connection.dialect.name == 'sqlite',
)
with context.begin_transaction():
    context.run_migrations()
