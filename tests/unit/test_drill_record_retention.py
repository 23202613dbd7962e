"""Retention of drill records (catalogue.retention.old_drill_records): a record past `retention` goes once a later
drill passed or DRILL_RECORDS_KEPT later records exist; the newest always stays; statuses are read lazily."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from hypothesis import given, settings
from hypothesis import strategies as st

from easybackup.catalogue.retention import DRILL_RECORDS_KEPT, old_drill_records
from easybackup.storage.drillrecord import drill_run_name, drills_prefix, is_drill_record

NOW = datetime(2025, 6, 17, 12, 0, tzinfo=timezone.utc)
DAY = 86400.0
STATUSES = ("success", "failed", "superseded", None)


def key(days_ago: float, number: int = 0) -> str:
    stamp = (NOW - timedelta(days=days_ago)).strftime("%Y-%m-%dT%H%M%SZ")
    return f"{drills_prefix('backups', 'main')}{stamp}-{number:012x}.drill.json"


class Statuses:
    """status_of for the tests: answers from a dict and remembers what was asked."""

    def __init__(self, statuses: dict[str, str | None]):
        self.statuses, self.asked = statuses, []

    def __call__(self, record: str) -> str | None:
        self.asked.append(record)
        return self.statuses.get(record)


def deleted(keys, statuses, retention_days: float = 30, keep: int = DRILL_RECORDS_KEPT) -> list[str]:
    return [item for item, _ in old_drill_records(keys, NOW, retention_days * DAY, Statuses(statuses), keep)]


def test_records_past_retention_go_once_a_later_drill_passed_and_say_why():
    keys = [key(40, 1), key(35, 2), key(10, 3), key(1, 4)]
    statuses = {keys[0]: "failed", keys[1]: "success", keys[2]: "success", keys[3]: "success"}
    found = old_drill_records(keys, NOW, 30 * DAY, Statuses(statuses))
    assert found == [(keys[0], "older than retention (30d) and a later drill passed (" + drill_run_name(keys[3]) + ")"),
                     (keys[1], "older than retention (30d) and a later drill passed (" + drill_run_name(keys[3]) + ")")]


def test_the_newest_record_stays_however_old():
    keys = [key(400, 1), key(300, 2)]
    assert deleted(keys, {k: "success" for k in keys}) == [keys[0]]
    assert deleted(keys[1:], {keys[1]: "success"}) == []


def test_a_failed_drills_record_stays_past_retention_until_a_drill_passes_again():
    keys = [key(50, 1), key(45, 2), key(40, 3), key(2, 4)]
    failing = {keys[0]: "success", keys[1]: "failed", keys[2]: "failed", keys[3]: "failed"}
    assert deleted(keys, failing) == []  # the failures, and the last pass before them
    passed_again = {**failing, keys[3]: "success"}
    assert deleted(keys, passed_again) == keys[:3]


def test_a_superseded_or_unreadable_drill_is_no_pass():
    keys = [key(40, 1), key(35, 2), key(1, 3)]
    assert deleted(keys, {keys[0]: "failed", keys[1]: "superseded", keys[2]: None}) == []


def test_failed_records_past_retention_are_bounded_by_the_newest_twenty():
    keys = [key(100 - n, n) for n in range(30)]  # 100 .. 71 days old, every drill failed
    assert deleted(keys, {k: "failed" for k in keys}) == keys[:10]


def test_records_younger_than_retention_stay_whatever_came_after_them():
    keys = [key(29, 1), key(20, 2), key(1, 3)]
    assert deleted(keys, {k: "success" for k in keys}) == []


def test_nothing_past_retention_reads_no_record():
    keys = [key(3, 1), key(2, 2), key(1, 3)]
    asked = Statuses({k: "success" for k in keys})
    assert old_drill_records(keys, NOW, 30 * DAY, asked) == [] and asked.asked == []


def test_statuses_are_read_newest_first_and_only_down_to_the_first_pass():
    keys = [key(60, 1), key(50, 2), key(40, 3), key(3, 4), key(2, 5), key(1, 6)]
    asked = Statuses({keys[3]: "success", keys[4]: "failed", keys[5]: "failed"})
    assert [k for k, _ in old_drill_records(keys, NOW, 30 * DAY, asked)] == keys[:3]
    assert asked.asked == [keys[5], keys[4], keys[3]]


def test_keys_that_are_no_drill_records_are_never_returned():
    foreign = ["backups/main/_drills/notes.txt", "backups/main/_runs/2020-01-01T000000Z-000000000001.run.json",
               "backups/main/shop/2020-01-01T000000Z-000000000001.dump.gz"]
    keys = [key(40, 1), key(1, 2)] + foreign
    assert deleted(keys, {key(1, 2): "success"}) == [key(40, 1)]


# -- the rule, exhaustively --------------------------------------------------------------------------------------

def expected(records: list[tuple[str, float, str | None]], retention_days: float, keep: int) -> set[str]:
    """The rule in plain words: past retention, and a later drill passed or `keep` later records exist."""
    ordered = sorted(records)
    found = set()
    for index, (name, days, _) in enumerate(ordered):
        later = ordered[index + 1:]
        if days > retention_days and later and (any(s == "success" for _, _, s in later) or len(later) >= keep):
            found.add(name)
    return found


records_strategy = st.lists(st.tuples(st.integers(min_value=0, max_value=120 * 24), st.sampled_from(STATUSES)),
                            max_size=40, unique_by=lambda item: item[0])


@settings(max_examples=300, deadline=None)
@given(records_strategy, st.integers(min_value=0, max_value=100), st.integers(min_value=1, max_value=25),
       st.randoms(use_true_random=False))
def test_old_drill_records_is_exactly_the_rule_whatever_the_order(hours, retention_days, keep, random):
    keys = {key(h / 24, n): (h / 24, status) for n, (h, status) in enumerate(hours)}
    statuses = {k: status for k, (_, status) in keys.items()}
    shuffled = list(keys)
    random.shuffle(shuffled)
    asked = Statuses(statuses)
    found = old_drill_records(shuffled, NOW, retention_days * DAY, asked, keep)
    # by run name: an older run's key sorts first
    oracle = expected([(drill_run_name(k), days, status) for k, (days, status) in keys.items()], retention_days,
                      keep)
    assert {drill_run_name(k) for k, _ in found} == oracle
    assert [k for k, _ in found] == sorted((k for k, _ in found), key=drill_run_name)  # oldest first
    assert all(reason.startswith("older than retention (") for _, reason in found)
    newest = max(keys, key=drill_run_name, default=None)
    assert newest not in {k for k, _ in found}
    # lazy: only the newest `keep` records are ever read, each at most once, newest first
    ordered = sorted(keys, key=drill_run_name)
    assert set(asked.asked) <= set(ordered[-keep:]) and len(asked.asked) == len(set(asked.asked))
    assert asked.asked == sorted(asked.asked, key=drill_run_name, reverse=True)


@settings(max_examples=200, deadline=None)
@given(records_strategy, st.integers(min_value=0, max_value=100), st.integers(min_value=1, max_value=25),
       st.lists(st.sampled_from(STATUSES), min_size=40, max_size=40))
def test_the_statuses_it_did_not_ask_for_change_nothing(hours, retention_days, keep, others):
    keys = [key(h / 24, n) for n, (h, _) in enumerate(hours)]
    statuses = {k: status for k, (_, status) in zip(keys, hours, strict=True)}
    asked = Statuses(statuses)
    found = old_drill_records(keys, NOW, retention_days * DAY, asked, keep)
    changed = {k: (statuses[k] if k in asked.asked else other) for k, other in zip(keys, others, strict=False)}
    assert old_drill_records(keys, NOW, retention_days * DAY, Statuses(changed), keep) == found


def test_a_drill_record_key_names_its_run():
    assert drill_run_name(key(1, 7)) == "2025-06-16T120000Z-000000000007"
    assert is_drill_record(key(1, 7)) and drill_run_name("backups/main/_runs/x.drill.json") is None


def test_a_record_whose_timestamp_is_no_date_is_kept_and_stops_nothing():
    odd = f"{drills_prefix('backups', 'main')}2025-02-30T120000Z-{1:012x}.drill.json"  # made by hand
    keys = [odd, key(40, 2), key(10, 3)]
    assert deleted(keys, {keys[2]: "success"}) == [keys[1]]
