"""Who may publish what: an agency publishes only as itself, and only its kinds' event types."""

from __future__ import annotations

from dataclasses import dataclass

from .catalog import AgencyKind, publisher_problem
from .envelope import ParsedEvent
from .errors import Rejected, RejectionCode


@dataclass(frozen=True)
class PublisherIdentity:
    """What the transport knows about the sender. A field left None is not constrained by the transport.

    An authenticated agency pins all three; a Kafka topic pins only the kind (ACLs decide who writes where);
    a trusted operator importing files pins nothing, so the envelope's own agency is taken as the publisher.
    """

    kind: AgencyKind | None = None
    id: str | None = None
    region: str | None = None

    @classmethod
    def trusted_operator(cls) -> "PublisherIdentity":
        return cls()


def bears(kind: str, agency_id: str, region: str, obligated_kind: str, obligated_id: str | None,
          obligated_region: str | None) -> bool:
    """Whether the agency (kind, id, region) bears an obligation: one named for it by its id, or one addressed to
    the agency of its kind for its own region without a name (R04: "the bureau of 520222"). Another agency of the
    same kind and region (a second court of a county) bears neither."""
    if obligated_kind != kind:
        return False
    return obligated_id == agency_id if obligated_id is not None else obligated_region == region


def authorise(event: ParsedEvent, publisher: PublisherIdentity) -> None:
    """Raise Rejected unless `publisher` may publish `event`."""
    agency = event.agency
    for field in ("kind", "id", "region"):
        expected = getattr(publisher, field)
        claimed = getattr(agency, field)
        if expected is not None and claimed != expected:
            raise Rejected(
                RejectionCode.NOT_AS_ITSELF,
                f"the envelope says agency.{field} is {claimed!r} but it was sent by {expected!r}; "
                "an agency publishes only as itself",
            )
    problem = publisher_problem(agency.kind, event.event_type, event.payload)
    if problem:
        raise Rejected(RejectionCode.FORBIDDEN_EVENT_TYPE, problem)
