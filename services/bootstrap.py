"""The composition root: builds the store and the use cases from configuration (environment variables)."""

from __future__ import annotations

from dataclasses import dataclass

from adapters.config import Settings
from adapters.eventstore import EventStore

from .ingest import Ingestor


@dataclass
class Services:
    settings: Settings
    store: EventStore
    ingestor: Ingestor

    def close(self) -> None:
        self.store.close()


def bootstrap(settings: Settings | None = None) -> Services:
    settings = settings or Settings.from_env()
    store = EventStore(settings.database_url)
    return Services(settings=settings, store=store, ingestor=Ingestor(store))
