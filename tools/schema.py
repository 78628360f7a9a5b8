"""The benches' stores on PostgreSQL live in a schema of their own (`?schema=` in the URL)."""

from __future__ import annotations


def ensure_schema(database_url: str) -> None:
    """A PostgreSQL URL's ?schema= must exist before eventsourcing creates its tables in it."""
    from urllib.parse import parse_qs, urlsplit

    parts = urlsplit(database_url)
    schema = parse_qs(parts.query).get("schema", [None])[0]
    if parts.scheme.startswith("postgres") and schema:
        import psycopg
        from psycopg import sql

        with psycopg.connect(database_url.split("?", 1)[0], autocommit=True) as connection:
            connection.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
