"""Use cases (ingest, queries), their entry points (CLI, HTTP API) and the composition root."""
