"""The lead register's law (domain/leads.py) on random sequences of actions (hypothesis): whatever officers and
supervisors try, in whatever order and at whatever times, the recorded actions replay to the same lead, the lead
as of any moment is the replay of the actions taken by then (and is what the register's versions say), a closed
lead stays closed, and nobody but a supervisor snoozes for more than 30 days or escalates."""

from __future__ import annotations

import datetime as dt

from hypothesis import given, settings
from hypothesis import strategies as st

from domain.calendar import SHANGHAI
from domain.leads import (ACTIONS, ALLOWED_FROM, SNOOZE_DAYS_WITHOUT_APPROVAL, Actor, GapSituation, Lead, LeadRefused, LeadStream,
                          apply, decide, lead_id, parse_lead_id, region_above, replay)
from services.leads import LeadRegister

START = dt.datetime(2026, 3, 2, 9, 0, tzinfo=SHANGHAI)
OFFICER = Actor(id="o", name="王检察官", agency_kind="procuratorate", agency_id="JCY-520222", region="520222")
SUPERVISOR = Actor(id="s", name="赵主任", supervisor=True, agency_kind="procuratorate", region="5202")
# What each action does to the state when it is done (assign, snooze, approve and reject leave it where it is).
TARGET = {"start_check": "checking", "confirm": "confirmed", "dismiss": "dismissed", "issue_notice": "notice_issued",
          "follow_up": "followed_up", "close": "closed", "escalate": "escalated"}

FIELDS = {  # the fields an officer may send with each action, right and wrong
    "assign": [{"assignee": "o2", "assignee_name": "李科员"}],
    "dismiss": [{"reason": "data_error"}, {"reason": "other", "note": "重复推送"}, {}],
    "issue_notice": [{"event_id": "e1", "notice_kind": "suggestion", "document_no": "盘检建〔2026〕1号"}],
    "follow_up": [{"note": "已回访"}, {}],
    "snooze": [{"reason": "等待补录"}, {}],
    "escalate": [{"note": "提请督办"}, {}],
    "reject": [{"note": "不同意"}, {}],
}
# "next": the step along the path from where the lead stands (check, confirm, issue, follow up, close), so that
# random histories go deep, not only around the first states.
PATH = ("start_check", "confirm", "issue_notice", "follow_up", "close")
step = st.tuples(
    st.sampled_from(ACTIONS + ("next",) * len(ACTIONS)),
    st.integers(0, 20),  # days after the previous step
    st.booleans(),  # by a supervisor
    st.booleans(),  # the gap was met late by then (已自行履行)
    st.booleans(),  # the notice was replied by then
    st.integers(0, 5),  # which of the action's field variants
    st.integers(-3, 90),  # a snooze's end, in days from the step's day
)


def fields_for(action: str, variant: int, snooze_days: int, now: dt.datetime) -> dict:
    choices = FIELDS.get(action, [{}])
    fields = dict(choices[variant % len(choices)])
    if action == "snooze":
        fields["until"] = (now.date() + dt.timedelta(days=snooze_days)).isoformat()
    return fields


def run(steps) -> tuple[list, list[Lead], list[dt.datetime]]:
    """Try every step; keep what was recorded, the lead after each recorded action and when it was taken."""
    lead, now, recorded, leads = Lead(), START, [], []
    for action, days, supervisor, met, replied, variant, snooze_days in steps:
        now += dt.timedelta(days=days, minutes=1)
        situation = GapSituation(fulfilled_at=START if met else None, notice_replied_at=now if replied else None)
        actor = SUPERVISOR if supervisor else OFFICER
        if action == "next":
            shown = lead.effective_state(now, SHANGHAI, situation)
            action = next((a for a in PATH if shown in ALLOWED_FROM[a]), "close")
        try:
            done = decide(lead, action, fields_for(action, variant, snooze_days, now), actor, now, SHANGHAI, situation,
                          "520222")
        except LeadRefused as refused:
            assert refused.code in ("invalid_transition", "needs_supervisor", "invalid_action")
            continue
        assert lead.state != "closed", "a closed lead took an action"
        if action == "snooze" and done.outcome == "done" and not supervisor:
            assert done.fields["days"] <= SNOOZE_DAYS_WITHOUT_APPROVAL
        if action == "escalate" and not supervisor:
            assert done.outcome == "requested"
        before = lead
        lead = apply(lead, done)
        if done.outcome == "done" and action in TARGET and not (action == "close" and before.state == "closed"):
            assert lead.state == TARGET[action], (action, before.state)
        recorded.append(done)
        leads.append(lead)
    return recorded, leads, [r.at for r in recorded]


@settings(max_examples=300, deadline=None)
@given(st.lists(step, max_size=25))
def test_recorded_actions_replay_to_the_same_lead_at_every_moment(steps):
    recorded, leads, times = run(steps)
    assert replay(recorded) == (leads[-1] if leads else Lead())
    for index, at in enumerate(times):
        assert replay(recorded, until=at) == leads[index]
        assert replay(recorded, until=at - dt.timedelta(seconds=1)) == (leads[index - 1] if index else Lead())


@settings(max_examples=200, deadline=None)
@given(st.lists(step, min_size=1, max_size=25), st.integers(0, 600))
def test_the_registers_versions_say_what_the_replay_says(steps, probe_days):
    """LeadRegister._versions writes rm_lead_versions: the version holding at any moment has the state, assignee
    and snooze of the replay of the actions taken by then."""
    recorded, _, _ = run(steps)
    if not recorded:
        return
    stream = LeadStream(lead_id="R04-00000000-0000-4000-8000-000000000001", person_key="k", rule="R04_not_reported",
                        triggered_by="00000000-0000-4000-8000-000000000001", region="520222")
    for done in recorded:
        stream.act(done.action, done.fields, done.by, done.by_name, done.at.isoformat(), done.outcome)
    versions = LeadRegister._versions(stream)
    moment = START + dt.timedelta(days=probe_days, minutes=7)
    micros = int(moment.timestamp() * 1_000_000)
    holding = [v for v in versions if v["from_us"] <= micros and (v["to_us"] is None or micros < v["to_us"])]
    expected = replay(recorded, until=moment)
    if not holding:
        assert expected == Lead()
        return
    [version] = holding
    assert version["state"] == expected.state
    assert version["assignee"] == (expected.assignee or {}).get("id")
    assert version["pending"] == (expected.pending.action if expected.pending else None)
    shown_snoozed = version["snoozed_until_us"] is not None and version["state"] != "closed" \
        and micros < version["snoozed_until_us"]
    assert shown_snoozed == (expected.effective_state(moment, SHANGHAI, GapSituation()) == "snoozed")


def test_lead_ids_are_stable_and_say_which_gap():
    lead = lead_id("R04_not_reported", "7d0c6a1e-2a4f-4a53-9a43-3c1f0b9e8f11")
    assert lead == "R04-7d0c6a1e-2a4f-4a53-9a43-3c1f0b9e8f11"
    assert parse_lead_id(lead) == ("R04", "7d0c6a1e-2a4f-4a53-9a43-3c1f0b9e8f11")
    assert parse_lead_id("R04-not-a-uuid") is None and parse_lead_id("X99-" + "0" * 36) is None


def test_the_region_above_a_county_is_its_city_then_its_province():
    assert [region_above(r) for r in ("520222", "520200", "5202", "52", "520000")] == ["5202", "52", "52", None, None]


def test_a_snooze_longer_than_30_days_waits_for_a_supervisor_and_ends_by_itself():
    long_ = decide(Lead(), "snooze", {"until": "2026-05-01", "reason": "住院"}, OFFICER, START, SHANGHAI,
                   GapSituation())
    assert long_.outcome == "requested"
    waiting = apply(Lead(), long_)
    assert waiting.state == "new" and waiting.pending == long_
    approved = apply(waiting, decide(waiting, "approve", {}, SUPERVISOR, START, SHANGHAI, GapSituation()))
    assert approved.effective_state(START, SHANGHAI, GapSituation()) == "snoozed"
    assert approved.effective_state(dt.datetime(2026, 5, 1, 0, 1, tzinfo=SHANGHAI), SHANGHAI,
                                    GapSituation()) == "new"
