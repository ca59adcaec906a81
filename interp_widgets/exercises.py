"""Tutorial exercises: the last cell of each notebook checks the reader's answers.

A notebook defines ``answer_1 = ...`` cells and a table ``CHECKS = {n: (check, solution, wrong)}``
(``check(answer)`` raises ``AssertionError`` with a hint when the answer is wrong; ``solution`` and
``wrong`` let the test suite prove each check accepts the right answer and rejects a wrong one):

    >>> CHECKS = {1: (check_1, " Rome", " Paris")}
    >>> iw.check_exercises(CHECKS, globals())
    exercise 1: correct
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

Check = tuple[Callable[[Any], Any], Any, Any]


def check_exercises(checks: Mapping[int, Check], namespace: Mapping[str, Any], *,
                    prefix: str = "answer_") -> dict[int, bool | None]:
    """Check ``namespace[f"{prefix}{n}"]`` with ``checks[n][0]`` for every exercise ``n``.

    An answer still ``...`` (or missing) counts as not answered (``None``); a wrong answer raises
    the check's ``AssertionError`` (its message is the hint), naming the exercise. Returns
    ``{n: True | None}`` and prints one line per exercise.
    """
    if not isinstance(checks, Mapping):
        raise TypeError(f"checks must be a mapping n -> (check, solution, wrong), got {type(checks).__name__}")
    status: dict[int, bool | None] = {}
    for n, entry in checks.items():
        if not (isinstance(entry, tuple) and len(entry) == 3 and callable(entry[0])):
            raise TypeError(f"checks[{n!r}] must be (check, solution, wrong) with a callable check")
        given = namespace.get(f"{prefix}{n}", ...)
        if given is ...:
            print(f"exercise {n}: not answered yet")
            status[n] = None
            continue
        try:
            entry[0](given)
        except AssertionError as e:
            raise AssertionError(f"exercise {n}: not yet: {e}") from None
        print(f"exercise {n}: correct")
        status[n] = True
    return status
