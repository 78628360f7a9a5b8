"""The composition root: builds the store, read models, rules and use cases from configuration."""

from __future__ import annotations

import gc
from dataclasses import dataclass

from adapters.chain import AuditChain
from adapters.config import ConfigError, Settings, plausible_range
from adapters.eventstore import EventStore
from adapters.readmodel import ReadModel, Sealer
from adapters.sessions import SessionStore
from domain.catalog import configure_plausible_dates
from domain.rules import RuleSet, load_rule_set
from projections.supervision import SupervisionProjection

from services.agencies import AgencyDirectory, AgencyFileError, directory_path
from services.leads import LeadRegister
from services.projector import Projector
from services.principals import DashboardSessions, Principals
from services.ingest import Ingestor, utc_now
from services.queries import Queries
from services.replay import Replay, record_rule_set
from services.identity import IdentityReview
from services.rosters import Reconciliation
from services.scorecard import Scorecards
from services.timeline import Timelines


@dataclass
class Services:
    settings: Settings
    store: EventStore
    ingestor: Ingestor
    rules: RuleSet
    read_model: ReadModel
    projection: SupervisionProjection
    queries: Queries
    replay: Replay
    principals: Principals
    timelines: Timelines
    leads: LeadRegister
    agencies: AgencyDirectory
    rosters: Reconciliation
    identity: IdentityReview
    scorecards: Scorecards
    chain: AuditChain | None = None  # the audit hash chain, extended after every write (services/audit.py)
    sessions: DashboardSessions | None = None  # the dashboard's server-side logins
    projector: Projector | None = None  # keeps the read model current (its mode: Settings.projector)

    def close(self) -> None:
        self.store.close()
        self.read_model.close()
        if self.chain is not None:
            self.chain.close()
        if self.sessions is not None:
            self.sessions.store.close()


def bootstrap(settings: Settings | None = None, clock=utc_now, projector: str | None = None) -> Services:
    """`projector`: the projector's mode when the settings name none (inline by default)."""
    settings = settings or Settings.from_env()
    if settings.plausible_dates:
        earliest, latest = plausible_range(settings.plausible_dates)
        try:
            configure_plausible_dates(earliest, latest)
        except ValueError as problem:
            raise ConfigError(f"HANDOFF_PLAUSIBLE_DATES: {problem}") from None
    try:
        agencies = AgencyDirectory(settings.agencies_file or directory_path({}))
    except AgencyFileError as problem:
        raise ConfigError(f"HANDOFF_AGENCIES_FILE: {problem}") from None
    store = EventStore(settings.database_url, cipher_key=settings.cipher_key)
    rules = load_rule_set(settings.rules_file)
    read_model = ReadModel(settings.database_url, Sealer(settings.cipher_key))
    projection = SupervisionProjection(store, read_model, rules, clock=clock, shares=settings.projector_shares)
    # The chain reads and writes the store's tables, which an in-memory store (the service tests') does not have.
    chain = AuditChain(store) if store.recorder.dialect != "memory" else None
    if chain is not None:
        store.after_write.append(chain.link_written)  # every write chained at once; `audit verify` never extends
    record_rule_set(store, rules, clock())
    queries = Queries(store, read_model, projection, clock)
    mode = settings.projector or projector or "inline"
    if mode not in ("inline", "background", "none"):
        raise ConfigError(f"HANDOFF_PROJECTOR {mode!r}: inline, background or none")
    scorecards = Scorecards(store, read_model, queries, agencies, rules, clock)
    runner = Projector(projection, mode, followers=[scorecards.catch_up])  # type: ignore[arg-type]
    ingestor = Ingestor(store, clock=clock)
    ingestor.after_store.append(runner.nudge)
    principals = Principals(store, clock, chained=chain.stream_is_chained if chain is not None else None)
    # Everything alive now (modules, pydantic's validators, the rule set) lives as long as the process: exempt it
    # from the cyclic garbage collector, which otherwise rescans it for every few hundred objects that ingest
    # allocates (about a sixth of ingest's time).
    gc.freeze()
    return Services(
        settings=settings, store=store, ingestor=ingestor, rules=rules, projector=runner,
        read_model=read_model, projection=projection, queries=queries,
        replay=Replay(store, token=read_model.sealer.token, queries=queries), chain=chain,
        principals=principals, timelines=Timelines(queries),
        leads=LeadRegister(store, read_model, queries, ingestor, rules, clock), agencies=agencies,
        rosters=Reconciliation(store, read_model, queries, ingestor, agencies, clock),
        identity=IdentityReview(store, read_model, ingestor, clock),
        scorecards=scorecards,
        sessions=DashboardSessions(SessionStore(settings.database_url), principals, clock),
    )
