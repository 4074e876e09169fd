"""Implementations of the metadata ports: in memory, SQLite and PostgreSQL."""
