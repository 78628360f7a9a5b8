#!/usr/bin/env bash
# Runs the tests whose outcome depends on "now" (marked `clock`, tests/conftest.py) once at each of several fixed
# dates, so that no date of the year can turn CI red: the law's answers differ on them (CPL 105 extends a period that
# ends on a rest day or a holiday), and every date is given to the tests as HANDOFF_TEST_NOW (tests/clock.py).
#
#   tests/run_at_dates.sh [pytest arguments...]     e.g. tests/run_at_dates.sh -x tests/integration/test_kafka_route.py
#
# PYTEST names the pytest to run (default: the project's virtualenv). Every date is run even when one fails, so that
# the report shows them all; the exit status is non-zero if any failed, or if no test was marked `clock` (pytest's
# exit status 5: the check would then be checking nothing).
set -uo pipefail
cd "$(dirname "$0")/.."
PYTEST=${PYTEST:-.venv/bin/pytest}

# The main run (`make test`) already runs them at the default "now", Thursday 2026-12-03, a working day.
DATES=(
  "2026-12-05T10:00:00+08:00"  # Saturday: the weekend extends periods ending on it
  "2027-02-09T10:00:00+08:00"  # 春节补假 (2027 statute only, no 调休 notice yet: due times provisional)
  "2026-10-01T10:00:00+08:00"  # 国庆节: a week-long holiday, R01 extended as far as R02 and R04
)

failed=()
for now in "${DATES[@]}"; do
  echo "== tests marked clock at HANDOFF_TEST_NOW=$now"
  HANDOFF_TEST_NOW="$now" "$PYTEST" -n 2 -q -m clock "$@" || failed+=("$now")
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "tests marked clock failed at: ${failed[*]}" >&2
  exit 1
fi
