"""Alembic migrations of the metadata schema; run by `SqlMetadataBackend.migrate()`."""

# the newest revision in `versions/`: a schema at it needs no migration, so the server
# skips importing Alembic (test/contract checks this against Alembic's own view)
HEAD_REVISION = '0002'
