"""Durations: `<n><unit>` in, seconds out; seconds in, text for people and for config out."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from easybackup.scheduling import format_duration, format_interval_text, parse_duration

GRAMMAR = "(use <n><unit> with unit s, m, h, d or w, e.g. 30m, 6h, 7d)"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("1s", 1),
        ("30s", 30),
        ("1m", 60),
        ("30m", 1800),
        ("90m", 5400),
        ("1h", 3600),
        ("6h", 21600),
        ("36h", 129600),
        ("1d", 86400),
        ("7d", 604800),
        ("30d", 2592000),
        ("1w", 604800),
        ("52w", 31449600),
        ("36525d", 36525 * 86400),
        (" 6h", 21600),
        ("6h ", 21600),
        ("\t30m\n", 1800),
    ],
)
def test_a_valid_duration_parses_to_seconds(text, seconds):
    assert parse_duration(text) == seconds
    assert isinstance(parse_duration(text), float)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("6x", f"'6x' is not a valid duration {GRAMMAR}"),
        ("", f"'' is not a valid duration {GRAMMAR}"),
        ("   ", f"'' is not a valid duration {GRAMMAR}"),
        ("6", f"'6' is not a valid duration {GRAMMAR}"),
        ("h", f"'h' is not a valid duration {GRAMMAR}"),
        ("6 h", f"'6 h' is not a valid duration {GRAMMAR}"),
        ("6H", f"'6H' is not a valid duration {GRAMMAR}"),
        ("-5m", f"'-5m' is not a valid duration {GRAMMAR}"),
        ("+5m", f"'+5m' is not a valid duration {GRAMMAR}"),
        ("1e3s", f"'1e3s' is not a valid duration {GRAMMAR}"),
        ("500ms", f"'500ms' is not a valid duration {GRAMMAR}"),
        ("1h30m", f"'1h30m' is not a valid duration {GRAMMAR}"),
        ("inf", f"'inf' is not a valid duration {GRAMMAR}"),
        ("３０m", f"'３０m' is not a valid duration {GRAMMAR}"),
        ("0s", f"'0s' is not a valid duration: the count must be at least 1 {GRAMMAR}"),
        ("000d", f"'000d' is not a valid duration: the count must be at least 1 {GRAMMAR}"),
        ("06h", f"'06h' is not a valid duration: the count must not start with 0 {GRAMMAR}"),
        ("1.5h", f"'1.5h' is not a valid duration: the count must be a whole number {GRAMMAR}"),
        (".5d", f"'.5d' is not a valid duration: the count must be a whole number {GRAMMAR}"),
        ("1M", f"'1M' is not a valid duration: months and years have no fixed length; use days or weeks {GRAMMAR}"),
        ("3mo", f"'3mo' is not a valid duration: months and years have no fixed length; use days or weeks {GRAMMAR}"),
        ("1y", f"'1y' is not a valid duration: months and years have no fixed length; use days or weeks {GRAMMAR}"),
        ("36526d", f"'36526d' is not a valid duration: it is longer than 100 years {GRAMMAR}"),
        ("9" * 40 + "s", f"'{'9' * 40}s' is not a valid duration: it is longer than 100 years {GRAMMAR}"),
    ],
)
def test_an_invalid_duration_is_refused_with_a_message_that_quotes_it_and_states_the_grammar(text, message):
    with pytest.raises(ValueError) as caught:
        parse_duration(text)
    assert str(caught.value) == message


def test_a_duration_with_a_newline_inside_is_refused_in_a_one_line_message():
    with pytest.raises(ValueError) as caught:
        parse_duration("6\nh")
    assert str(caught.value) == f"'6\\nh' is not a valid duration {GRAMMAR}"


def test_a_very_long_input_is_cut_in_the_message():
    with pytest.raises(ValueError) as caught:
        parse_duration("x" * 1000)
    assert len(str(caught.value)) < 200


@pytest.mark.parametrize("value", [30, 1.5, None, True, ["6h"]])
def test_a_duration_that_is_not_text_is_refused_with_a_value_error(value):
    with pytest.raises(ValueError, match="is not a valid duration: expected text such as 30m, 6h or 7d"):
        parse_duration(value)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (0.0004, "0s"),
        (0.001, "1ms"),
        (0.85, "850ms"),
        (0.9996, "1s"),
        (1, "1s"),
        (42, "42s"),
        (59.6, "1m"),
        (60, "1m"),
        (252, "4m 12s"),
        (252.6, "4m 13s"),
        (3599.6, "1h"),
        (3660, "1h 1m"),
        (5399, "1h 30m"),
        (7200, "2h"),
        (7229, "2h"),
        (86390, "1d"),
        (86400, "1d"),
        (97200, "1d 3h"),
        (99000, "1d 4h"),
        (30 * 86400, "30d"),
        (10_000_000, "115d 18h"),
        (-300, "-5m"),
        (-0.25, "-250ms"),
    ],
)
def test_format_duration_says_a_length_in_at_most_two_units(seconds, text):
    assert format_duration(seconds) == text


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_format_duration_refuses_a_value_that_is_not_a_length(value):
    with pytest.raises(ValueError, match="is not a length of time"):
        format_duration(value)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (1, "1s"),
        (30, "30s"),
        (252, "252s"),
        (60, "1m"),
        (5400, "90m"),
        (3600, "1h"),
        (97200, "27h"),
        (86400, "1d"),
        (30 * 86400, "30d"),
        (604800, "1w"),
        (14 * 86400, "2w"),
        (0, "0s"),
        (0.5, "500ms"),
        (90.5, "1m 30s"),
    ],
)
def test_format_interval_text_gives_the_canonical_form_when_exact(seconds, text):
    assert format_interval_text(seconds) == text


@given(st.integers(min_value=1, max_value=5000), st.sampled_from(["s", "m", "h", "d", "w"]))
def test_the_canonical_form_parses_back_to_the_same_length(count, unit):
    seconds = parse_duration(f"{count}{unit}")
    assert parse_duration(format_interval_text(seconds)) == seconds


@given(st.text(max_size=30))
def test_arbitrary_text_either_parses_to_a_positive_duration_or_raises_value_error(text):
    try:
        seconds = parse_duration(text)
    except ValueError as exc:
        assert "\n" not in str(exc)
    else:
        assert seconds >= 1 and seconds == int(seconds)


@given(st.from_regex(r"\A\s?[0-9]{1,6}[smhdwMy]{1,2}\s?\Z"))
def test_text_close_to_the_grammar_either_parses_or_raises_value_error(text):
    try:
        assert parse_duration(text) >= 1
    except ValueError as exc:
        assert str(exc).startswith(f"'{text.strip()}' is not a valid duration")


@given(st.floats(min_value=-1e9, max_value=1e9, allow_nan=False))
def test_format_duration_never_uses_more_than_two_units(seconds):
    assert len(format_duration(seconds).split()) <= 2
