"""Alembic migrations of the metadata schema; run by `SqlMetadataBackend.migrate()`."""
