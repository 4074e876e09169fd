"""Metadata in SQLite or PostgreSQL through SQLAlchemy Core (async), schema by Alembic."""
