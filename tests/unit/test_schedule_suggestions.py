"""Schedules as people write them: never accepted, answered with the accepted forms and the nearest schedule."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from easybackup.scheduling import parse_schedule
from easybackup.scheduling.suggestions import suggest_schedule

FORMS = ("(use <n><unit> with unit s, m, h, d or w and an optional @offset, e.g. 6h, 1d@02:30, 1w@sun-03:00, "
         "or a 5-field cron expression such as 0 3 * * *)")

PHRASES = [
    # days
    ("1 day", ("1d",)), ("1 days", ("1d",)), ("1day", ("1d",)), ("1 d", ("1d",)), ("1D", ("1d",)),
    ("day", ("1d",)), ("a day", ("1d",)), ("one day", ("1d",)), ("every day", ("1d",)), ("each day", ("1d",)),
    ("Every Day", ("1d",)), ("once a day", ("1d",)), ("daily", ("1d",)), ("Daily", ("1d",)), ("nightly", ("1d",)),
    ("every night at 1am", ("1d@01:00",)), ("'daily'", ("1d",)), ("every 24 hours", ("1d",)),
    ("every 2 days", ("2d",)), ("every other day", ("2d",)), ("every 7 days", ("7d",)),
    ("every 10 days at noon", ("10d@12:00",)), ("midnight", ("1d",)), ("noon", ("1d@12:00",)),
    ("every 36 hours", ("1d", "2d")),
    # times of day
    ("daily at 02:30", ("1d@02:30",)), ("every day at 2:30", ("1d@02:30",)), ("daily at 2am", ("1d@02:00",)),
    ("every day at 3 am", ("1d@03:00",)), ("daily at 11:45pm", ("1d@23:45",)), ("daily at 12am", ("1d",)),
    ("daily at 12pm", ("1d@12:00",)), ("at 02:30", ("1d@02:30",)), ("1d @ 02:30", ("1d@02:30",)),
    # hours and minutes
    ("hourly", ("1h",)), ("every hour", ("1h",)), ("1 hour", ("1h",)), ("every 6 hours", ("6h",)),
    ("6 hours", ("6h",)), ("6hrs", ("6h",)), ("6hr", ("6h",)), ("6 h", ("6h",)), ("6H", ("6h",)),
    ("every six hours", ("6h",)), ("@every 6h", ("6h",)), ("every 6 hours at 00:30", ("6h@00:30",)),
    ("every 6 hours at 7:00", ("6h@01:00",)), ("twice a day", ("12h",)), ("twice daily", ("12h",)),
    ("3 times a day", ("8h",)), ("3x a day", ("8h",)), ("thrice daily", ("8h",)), ("four times an hour", ("15m",)),
    ("every 5 hours", ("4h", "6h")), ("every 7 hours", ("6h", "8h")), ("every 30 minutes", ("30m",)),
    ("30 min", ("30m",)), ("30mins", ("30m",)), ("every 90 minutes", ("90m",)), ("every 7 minutes", ("6m", "8m")),
    ("every 10 seconds", ("10s",)),
    # weeks and weekdays
    ("weekly", ("1w",)), ("every week", ("1w",)), ("1 week", ("1w",)), ("2 w", ("2w",)), ("weekly at 3am",
                                                                                     ("1w@mon-03:00",)),
    ("every monday", ("1w@mon",)), ("mondays", ("1w@mon",)), ("on fridays", ("1w@fri",)),
    ("weekly on sunday", ("1w@sun",)), ("every sunday at 3am", ("1w@sun-03:00",)),
    ("every sun at 03:00", ("1w@sun-03:00",)), ("every 2 weeks on sunday", ("2w@sun",)),
    ("every 3 weeks on fri at 11pm", ("3w@fri-23:00",)), ("twice a week", ("3d", "4d")),
    # calendar periods: cron
    ("monthly", ("0 0 1 * *",)), ("every month", ("0 0 1 * *",)), ("monthly at 3am", ("0 3 1 * *",)),
    ("yearly", ("0 0 1 1 *",)), ("annually", ("0 0 1 1 *",)),
    # nothing near
    ("whenever", ()), ("hello world", ()), ("sometimes", ()), ("every blue moon", ()), ("0 3 * *", ()),
    ("-1d", ()), ("1,2 days", ()), ("every 99999999999 days", ()), ("25:00", ()), ("daily at 13pm", ()),
    ("daily at 24:00", ()), ("every 0 days", ()), ("6 hours 30 minutes", ()), ("日次", ()), ("", ()),
]


@pytest.mark.parametrize(("text", "expected"), PHRASES, ids=[text or "empty" for text, _ in PHRASES])
def test_a_phrase_gets_the_nearest_schedule_and_each_suggestion_parses(text, expected):
    assert suggest_schedule(text) == expected
    for suggestion in expected:
        parse_schedule(suggestion)


@pytest.mark.parametrize(("text", "expected"), [(t, e) for t, e in PHRASES if e])
def test_a_phrase_is_refused_with_the_accepted_forms_and_did_you_mean(text, expected):
    with pytest.raises(ValueError) as caught:
        parse_schedule(text)
    choices = " or ".join(f'"{choice}"' for choice in expected)
    assert str(caught.value) == f"'{text.strip()}' is not a valid schedule; did you mean {choices}? {FORMS}" \
        or str(caught.value) == f"{text.strip()!r} is not a valid schedule; did you mean {choices}? {FORMS}"


@pytest.mark.parametrize("text", ["every day", "1 day", "hello world", "whenever you like", "every blue moon"])
def test_a_phrase_of_several_words_is_not_called_a_cron_expression(text):
    with pytest.raises(ValueError) as caught:
        parse_schedule(text)
    assert "cron expression: it has" not in str(caught.value)
    assert str(caught.value).startswith(f"'{text}' is not a valid schedule") and str(caught.value).endswith(FORMS)


@pytest.mark.parametrize(("text", "message"), [
    ("5h", "'5h' does not divide a day; use one of 1h, 2h, 3h, 4h, 6h, 8h, 12h"),
    ("1d@2:30", "'1d@2:30' has an invalid offset '2:30'"),
    ("6x", "'6x' is not a valid interval ("),
    ("1mo", "'1mo' is not a valid interval: months and years have no fixed length"),
    ("0 3 * *", "'0 3 * *' is not a valid cron expression: it has 4 fields"),
    ("61 * * * *", "'61 * * * *' is not a valid cron expression: minute '61'"),
])
def test_text_in_easybackups_own_grammar_keeps_its_precise_reason(text, message):
    with pytest.raises(ValueError) as caught:
        parse_schedule(text)
    assert str(caught.value).startswith(message)
    assert "did you mean" not in str(caught.value)


@pytest.mark.parametrize("text", ["1d", "6h", "6h@00:30", "1w@sun-03:00", "0 3 * * *", "@daily", "@hourly", "@weekly"])
def test_schedules_easybackup_reads_still_parse_as_they_are(text):
    assert str(parse_schedule(text)) == text


WORDS = st.sampled_from(["every", "each", "a", "once", "twice", "3", "6", "0", "12", "99", "other", "six", "day",
                         "days", "hours", "hr", "min", "minutes", "seconds", "week", "weeks", "daily", "hourly",
                         "weekly", "monthly", "monday", "sundays", "fri", "at", "on", "3am", "12pm", "02:30",
                         "7:00", "noon", "midnight", "x", "times", "@", "1d", "6h", "month", "year", "night"])


@settings(max_examples=600, derandomize=True, database=None, deadline=None)
@given(st.lists(WORDS, min_size=1, max_size=5).map(" ".join) | st.text(max_size=30))
def test_every_suggestion_for_any_text_is_a_schedule_easybackup_reads(text):
    for suggestion in suggest_schedule(text):
        parse_schedule(suggestion)
