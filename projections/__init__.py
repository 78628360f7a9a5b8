"""Read models fed from the event store's global log (status, gaps, statistics, routing)."""
