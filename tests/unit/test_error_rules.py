"""A program's stderr is read by rules in priority order: the first rule that matches any line wins, whatever the
order of the lines."""

from easybackup.error_rules import first_match, rule

AUTH = rule(r"password authentication failed", "authentication", False, "check the password")
CONNECT = rule(r"could not connect", "connection", True, "check the server")
RULES = (AUTH, CONNECT)


def test_the_first_rule_wins_even_when_a_later_rule_matches_an_earlier_line():
    lines = ["pg_dump: error: could not connect to server", "FATAL:  password authentication failed for user x"]
    assert first_match(RULES, lines) == (AUTH, lines[1])


def test_the_first_matching_line_of_the_winning_rule_is_the_evidence():
    lines = ["could not connect (1)", "could not connect (2)"]
    assert first_match(RULES, lines) == (CONNECT, "could not connect (1)")


def test_patterns_ignore_case():
    assert first_match(RULES, ["COULD NOT CONNECT"])[0] is CONNECT


def test_no_rule_matching_is_none():
    assert first_match(RULES, ["something else", ""]) is None
    assert first_match(RULES, []) is None


def test_lines_may_be_any_iterable_read_once():
    assert first_match(RULES, iter(["x", "could not connect"])) == (CONNECT, "could not connect")
