"""The tests' "now", one source for all of them, and the law's day counting that their expectations are built with.

No test reads the machine's clock to build what it expects. The law's answer depends on the date (CPL 105 extends a
period whose last day is a rest day or a holiday), so a test built from the real date passes on some days and fails
on others. A test whose outcome depends on the time is marked `clock`, takes the `now` fixture (tests/conftest.py)
and gives that moment to the code under test:

- in this process, as the clock the services take: `bootstrap(settings, clock=...)`, `Ingestor(store, clock=...)`,
  `Router(..., clock=...)`, with a `Clock` the test can move;
- to a `handoff` subprocess, which has no clock to inject, through libfaketime: `faketime_env(now)` is the
  environment that makes the process's own clock start at `now` (and run on from there).

`now` is HANDOFF_TEST_NOW (an ISO datetime) when it is set, else DEFAULT_NOW. tests/run_at_dates.sh runs the tests
marked `clock` at a working day, a weekend and holidays, so that no date can make them fail.
"""

from __future__ import annotations

import datetime as dt
import functools
import glob
import os
import subprocess
import sys

import holidays
import pytest

from tests.builders import CST

NOW_VARIABLE = "HANDOFF_TEST_NOW"
# A Thursday, a working day: the day CI first failed on a test that built its dates from the real today.
DEFAULT_NOW = dt.datetime(2026, 12, 3, 10, 0, tzinfo=CST)


def configured_now() -> dt.datetime:
    """HANDOFF_TEST_NOW, or DEFAULT_NOW when it is not set; in Shanghai time (+08:00), to the second.

    A time without an offset is Shanghai wall-clock time, as everywhere in the project. Whole seconds, because that
    is what libfaketime can be given: the in-process clock and the subprocesses' then agree."""
    text = os.environ.get(NOW_VARIABLE, "").strip()
    if not text:
        return DEFAULT_NOW
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{NOW_VARIABLE}={text!r} is not an ISO datetime (e.g. 2026-12-05T10:00:00+08:00)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=CST)
    return moment.astimezone(CST).replace(microsecond=0)


class Clock:
    """A clock a test sets and moves. Called like services.ingest.utc_now: the current moment, an aware datetime."""

    def __init__(self, now: dt.datetime):
        if now.tzinfo is None:
            raise ValueError("a Clock needs an aware datetime")
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


# -- subprocesses: libfaketime -----------------------------------------------------------------------------------------

# Debian's package `faketime` (with libfaketime) installs the library under the architecture's multiarch folder.
LIBFAKETIME_PATTERNS = ("/usr/lib/*/faketime/libfaketime.so.1", "/usr/lib/faketime/libfaketime.so.1",
                        "/usr/local/lib/faketime/libfaketime.so.1")


def libfaketime() -> str:
    """The path of libfaketime.so.1 (HANDOFF_LIBFAKETIME if set); fails the test if there is none.

    Not a skip: CI installs the package (.ci/run), and a test that needs "now" in a subprocess proves nothing
    without it."""
    configured = os.environ.get("HANDOFF_LIBFAKETIME")
    candidates = [configured] if configured else [path for pattern in LIBFAKETIME_PATTERNS
                                                  for path in sorted(glob.glob(pattern))]
    for path in candidates:
        if os.path.isfile(path):
            return path
    pytest.fail("libfaketime not found (looked for "
                + (configured if configured else ", ".join(LIBFAKETIME_PATTERNS))
                + "): install Debian's package with `apt-get install -y faketime` (.ci/run does), or set "
                  "HANDOFF_LIBFAKETIME to the library's path. The `handoff` subprocesses of the tests marked "
                  "`clock` need it to run at the tests' \"now\".", pytrace=False)


def faketime_env(now: dt.datetime) -> dict[str, str]:
    """Environment variables that make a subprocess's clock start at `now` and run on from there.

    Merge them over os.environ: `subprocess.run(cmd, env={**os.environ, **faketime_env(now)})`."""
    library = libfaketime()
    preload = ":".join(filter(None, [library, os.environ.get("LD_PRELOAD")]))
    env = {
        "LD_PRELOAD": preload,
        # "@": start at this moment and run on (without the "@" the clock would stand still, and timeouts with it).
        # libfaketime reads it in the process's local time zone, so it is given in UTC, and TZ says so; "UTC0" is a
        # POSIX rule, valid without any tzdata file. The project's code never uses the local zone (it works in UTC
        # and Asia/Shanghai), so the subprocess computes as it would anywhere.
        "FAKETIME": "@" + now.astimezone(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S"),
        "TZ": "UTC0",
        # The subprocess's own children (the ingest worker's fetch process) go on from the parent's fake time
        # instead of starting again at `now`.
        "FAKETIME_DONT_RESET": "1",
        # File times stay real: Python compares source and bytecode-cache times, and faked ones would make every
        # faked process rewrite the venv's .pyc files. (The monotonic clock must stay faked: with
        # FAKETIME_DONT_FAKE_MONOTONIC=1, Python 3.11's time.sleep fails with EINVAL under libfaketime 0.9.10.)
        "NO_FAKE_STAT": "1",
    }
    _check_faketime(library, env["FAKETIME"])
    return env


@functools.lru_cache(maxsize=None)
def _check_faketime(library: str, faketime: str) -> None:
    """Run the venv's Python under the environment once and see that its clock really is the fake one: a library
    that loads but does not take (another architecture, a static binary) must not leave the real date in place."""
    env = {**os.environ, "LD_PRELOAD": library, "FAKETIME": faketime, "TZ": "UTC0", "NO_FAKE_STAT": "1"}
    probe = subprocess.run([sys.executable, "-c", "import time; print(time.time())"], env=env, capture_output=True,
                           text=True, timeout=60)
    expected = dt.datetime.strptime(faketime[1:], "%Y-%m-%d %H:%M:%S").replace(tzinfo=dt.timezone.utc).timestamp()
    try:
        seen = float(probe.stdout.strip())
    except ValueError:
        seen = None
    if probe.returncode != 0 or seen is None or not 0 <= seen - expected < 60:
        pytest.fail(f"libfaketime ({library}) did not set the clock of {sys.executable}: FAKETIME={faketime!r} "
                    f"gave time.time() = {probe.stdout.strip() or '?'} (expected about {expected:.0f}); "
                    f"stderr: {probe.stderr.strip()[-500:]}", pytrace=False)


# -- the law's day counting, for expected due times --------------------------------------------------------------------

@functools.lru_cache(maxsize=64)
def _china(year: int) -> holidays.HolidayBase:
    return holidays.China(years=year)


def is_rest_day(day: dt.date) -> bool:
    """A public holiday, or a Saturday or Sunday not made a working day (调休).

    The days are the State Council's yearly notice as the `holidays` package records it, and for a year without a
    notice the statute alone (全国年节及纪念日放假办法: the holidays, and 补假 for one that falls on a weekend). The
    facts come from the package; the counting below is written here from CPL 105, not taken from domain/."""
    china = _china(day.year)
    if day in china.weekend_workdays:
        return False
    return day.weekday() >= 5 or day in china


def period_end(start: dt.date, days: int) -> dt.datetime:
    """The end of an N-day period by CPL 105 (not in custody): the starting day is not counted, so the period ends
    at 24:00 of start + N; if that day is a rest day or a holiday, at 24:00 of the first working day after it.
    24:00 of day D is written as 00:00 of D + 1, Shanghai time: an act is in time strictly before it."""
    last = start + dt.timedelta(days=days)
    while is_rest_day(last):
        last += dt.timedelta(days=1)
    return dt.datetime.combine(last + dt.timedelta(days=1), dt.time(0), tzinfo=CST)
