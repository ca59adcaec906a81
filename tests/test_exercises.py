"""Tutorial exercise checks: unanswered, correct, wrong (hint raised), malformed tables."""

from __future__ import annotations

import pytest

import interp_widgets as iw


def _check(answer):
    assert answer == 4, "add the two numbers"


CHECKS = {1: (_check, 4, 5), 2: (_check, 4, 3)}


def test_unanswered_and_correct_answers_are_reported(capsys):
    ns = {"answer_1": 4, "answer_2": ...}
    assert iw.check_exercises(CHECKS, ns) == {1: True, 2: None}
    out = capsys.readouterr().out.splitlines()
    assert out == ["exercise 1: correct", "exercise 2: not answered yet"]
    assert iw.check_exercises(CHECKS, {}) == {1: None, 2: None}  # missing names count as unanswered


def test_a_wrong_answer_raises_the_hint_naming_the_exercise():
    with pytest.raises(AssertionError, match=r"exercise 2: not yet: add the two numbers"):
        iw.check_exercises(CHECKS, {"answer_1": 4, "answer_2": 3})


def test_solutions_pass_and_wrong_answers_fail_for_every_entry():
    for n, (check, solution, wrong) in CHECKS.items():
        assert iw.check_exercises({n: (check, solution, wrong)}, {f"answer_{n}": solution}) == {n: True}
        with pytest.raises(AssertionError):
            iw.check_exercises({n: (check, solution, wrong)}, {f"answer_{n}": wrong})


def test_malformed_tables_are_refused():
    with pytest.raises(TypeError, match="mapping"):
        iw.check_exercises([(_check, 1, 2)], {})
    with pytest.raises(TypeError, match=r"checks\[1\] must be \(check, solution, wrong\)"):
        iw.check_exercises({1: ("not callable", 1, 2)}, {"answer_1": 1})
