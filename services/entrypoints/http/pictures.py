"""What the dashboard draws rather than writes: times as a reader expects them (Shanghai, 24:00 for a day's end), the
timeline of a person (a lane per agency, obligations as bars), the trend of the 脱管漏管率 and bar rows."""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

from domain.calendar import SHANGHAI, add_months, end_of_day

from services.entrypoints.http.labels import AGENCY_LABELS, EVENT_LABELS


# -- formatting -------------------------------------------------------------------------------------------------------


def local(moment: dt.datetime | str | None) -> dt.datetime | None:
    if moment is None:
        return None
    if isinstance(moment, str):
        moment = dt.datetime.fromisoformat(moment)
    return moment.astimezone(SHANGHAI)


def fmt_time(moment: dt.datetime | str | None) -> str:
    moment = local(moment)
    return moment.strftime("%Y-%m-%d %H:%M") if moment else "—"


def fmt_date(moment: dt.datetime | str | None) -> str:
    moment = local(moment)
    return moment.strftime("%Y-%m-%d") if moment else "—"


def fmt_due(moment: dt.datetime | str | None) -> str:
    """A due time as the law counts it: 00:00 of a day is 24:00 of the day before."""
    moment = local(moment)
    if moment is None:
        return "—"
    if moment.time() == dt.time(0):
        return f"{(moment.date() - dt.timedelta(days=1)).isoformat()} 24:00"
    return moment.strftime("%Y-%m-%d %H:%M")


# -- the timeline picture ---------------------------------------------------------------------------------------------

SVG_WIDTH, SVG_LEFT, SVG_RIGHT = 1000, 92, 18
AXIS_Y, TERM_Y, LANES_Y = 40, 50, 78
EVENT_ROW, TRACK, LANE_GAP = 24, 12, 8


def _ticks(t0: dt.datetime, t1: dt.datetime) -> tuple[list[dt.datetime], int]:
    """Axis ticks at month starts (every 1, 2, 3, 6... months, at most about 10); weekly for a short span. The step
    in months comes back too (0: weekly)."""
    if t1 - t0 < dt.timedelta(days=70):
        day = t0.astimezone(SHANGHAI).date() + dt.timedelta(days=1)
        ticks = []
        while (moment := dt.datetime.combine(day, dt.time(0), tzinfo=SHANGHAI)) <= t1:
            ticks.append(moment)
            day += dt.timedelta(days=7)
        return ticks, 0
    months = max(1, (t1.year - t0.year) * 12 + t1.month - t0.month)
    step = next(s for s in (1, 2, 3, 6, 12, 24, 60, 120) if months / s <= 10)
    first = dt.date(t0.year, t0.month, 1)
    if step >= 12:
        first = dt.date(t0.year, 1, 1)
    elif step > 1:
        first = dt.date(t0.year, (t0.month - 1) // step * step + 1, 1)
    ticks, day = [], first
    while True:
        moment = dt.datetime.combine(day, dt.time(0), tzinfo=SHANGHAI)
        if moment > t1:
            return ticks, step
        if moment >= t0:
            ticks.append(moment)
        day = add_months(day, step)


def timeline_picture(timeline: dict[str, Any], lang: str, rule_title) -> dict[str, Any]:
    """Coordinates for the SVG: lanes, event marks, obligation bars on tracks, the term band, the as-of line."""
    moment = local(timeline["as_of"])
    events = [{**e, "at": local(e["occurred_at"])} for e in timeline["events"]]
    bars = [{**b, "start": local(b["from"]) or local(b["due_at"]), "due": local(b["due_at"]),
             "done": local(b["fulfilled_at"])} for b in timeline["obligations"]]
    term = timeline["term"]
    term_start = term_end = None
    if term:
        term_start = dt.datetime.combine(dt.date.fromisoformat(term["start"]), dt.time(0), tzinfo=SHANGHAI)
        term_end = end_of_day(dt.date.fromisoformat(term["end"]))
    # The picture spans the history up to as_of; obligations and the term running on into the future are cut at
    # the right edge (with an arrow), or a term of years would squash the history into a corner.
    times = [e["at"] for e in events] + [b["start"] for b in bars] + [moment]
    times += [b["due"] for b in bars if b["state"] != "upcoming"] + [b["done"] for b in bars if b["done"]]
    t0 = min(times + ([term_start] if term_start else []))
    t1 = max(times)
    span = max(t1 - t0, dt.timedelta(days=7))
    t0, t1 = t0 - span * 0.03, t1 + span * 0.1
    plot = SVG_WIDTH - SVG_LEFT - SVG_RIGHT

    def x(t: dt.datetime) -> float:
        t = min(max(t, t0), t1)
        return round(SVG_LEFT + (t - t0) / (t1 - t0) * plot, 1)

    lanes, y = [], LANES_Y
    for kind in timeline["lanes"]:
        lane_bars = sorted((b for b in bars if b["lane"] == kind), key=lambda b: b["start"])
        track_ends: list[float] = []
        drawn = []
        for bar in lane_bars:
            x1 = x(bar["start"])
            if bar["state"] == "open":
                end = moment
            elif bar["state"] in ("met", "late"):
                end = bar["done"] or bar["due"]
            else:
                end = bar["due"]
            x2 = max(x(end), x1 + 3)
            xd = x(bar["due"])
            track = next((i for i, e in enumerate(track_ends) if e + 2 < x1), None)
            if track is None:
                track = len(track_ends)
                track_ends.append(x2)
            else:
                track_ends[track] = x2
            drawn.append({**bar, "x1": x1, "x2": x2, "xd": xd, "track": track, "clipped": end > t1,
                          "overdue_x": min(max(xd, x1), x2), "title": rule_title(bar["rule"])})
        height = EVENT_ROW + max(1, len(track_ends)) * TRACK + LANE_GAP
        for bar in drawn:
            bar["y"] = y + EVENT_ROW + bar["track"] * TRACK
        marks = [{**e, "x": x(e["at"]), "y": y + EVENT_ROW / 2,
                  "label": EVENT_LABELS.get(e["event_type"], e["event_type"]) if lang == "zh" else e["event_type"]}
                 for e in events if e["lane"] == kind]
        lanes.append({"kind": kind, "label": AGENCY_LABELS[lang].get(kind, kind), "y": y, "height": height,
                      "marks": marks, "bars": drawn})
        y += height
    ticks, step = _ticks(t0, t1)
    return {
        "width": SVG_WIDTH, "height": y + 8, "left": SVG_LEFT, "right": SVG_WIDTH - SVG_RIGHT,
        "axis_y": AXIS_Y, "term_y": TERM_Y, "lanes_y": LANES_Y, "bottom": y,
        "ticks": [{"x": x(t), "label": t.strftime("%Y" if step >= 12 else "%Y-%m" if step else "%m-%d")}
                  for t in ticks],
        "term": {"x1": x(term_start), "x2": x(term_end), "clipped": term_end > t1,
                 "start": term["start"], "end": term["end"], "category": term["category"]} if term else None,
        "as_of_x": x(moment), "as_of_label": fmt_date(moment - dt.timedelta(microseconds=1)),
        "as_of_anchor": "start" if x(moment) < SVG_LEFT + 160 else "end",
        "lanes": lanes,
    }


def trend_picture(points: list[dict[str, Any]]) -> dict[str, Any]:
    """Coordinates of the monthly trend chart (a line with points; missing months leave a break)."""
    width, height, left, right, top, bottom = 800, 250, 56, 64, 18, 44
    values = [p["rate"] for p in points if p["rate"] is not None]
    top_value = max([*values, 5.0])
    magnitude = 10 ** math.floor(math.log10(top_value))
    step = next(s * magnitude for s in (0.5, 1, 2, 2.5, 5, 10) if top_value / (s * magnitude) <= 5)
    y_max = step * math.ceil(top_value / step)
    plot_w, plot_h = width - left - right, height - top - bottom

    def y(value: float) -> float:
        return round(top + plot_h - value / y_max * plot_h, 1)

    n = len(points)
    drawn = []
    for i, point in enumerate(points):
        px = round(left + (plot_w * (i + 0.5) / n), 1)
        drawn.append({**point, "x": px, "y": y(point["rate"]) if point["rate"] is not None else None})
    segments, current = [], []
    for point in drawn:
        if point["y"] is None:
            if len(current) > 1:
                segments.append(current)
            current = []
        else:
            current.append(f"{point['x']},{point['y']}")
    if len(current) > 1:
        segments.append(current)
    ticks = []
    value = 0.0
    while value <= y_max + 1e-9:
        ticks.append({"y": y(value), "label": f"{value:g}"})
        value += step
    return {"width": width, "height": height, "left": left, "right": width - right, "top": top,
            "base": top + plot_h, "points": drawn, "lines": [" ".join(s) for s in segments], "ticks": ticks,
            "target_y": y(5.0), "bar_w": round(plot_w / n * 0.5, 1)}


def bar_rows(items, extra: dict[str, int] | None = None) -> list[dict[str, Any]]:
    """Rows of (key, count) with the bar width (percent of the largest)."""
    items = list(items)
    top = max([count for _, count in items] + [1])
    return [{"key": key, "count": count, "extra": (extra or {}).get(key), "pct": round(100 * count / top, 1)}
            for key, count in items]
