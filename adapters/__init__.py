"""Infrastructure behind small interfaces: the eventsourcing store (SQLite/PostgreSQL), later Kafka and read models."""
