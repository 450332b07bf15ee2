"""The Pareto frontier, one implementation for `recommend` and the trade-off plots.

A point is on the frontier when no other point has a lower-or-equal cost and a strictly higher gain.
Ties are broken the same way everywhere: by cost (lower first), then gain (higher first), then the
caller's key (a configuration's name), so the frontier a plot draws is the one `recommend` prints.
"""

from __future__ import annotations

from typing import Callable, Hashable, Sequence, TypeVar

T = TypeVar("T")


def frontier(items: Sequence[T], cost: Callable[[T], float], gain: Callable[[T], float],
             key: Callable[[T], Hashable] = lambda item: 0) -> list[T]:
    """The items no other beats on both cost (lower) and gain (higher), cheapest first.

    Items whose cost or gain is None or NaN are left out (they cannot be placed).
    """
    placed = [it for it in items if _finite(cost(it)) and _finite(gain(it))]
    placed.sort(key=lambda it: (cost(it), -gain(it), key(it)))
    front: list[T] = []
    for it in placed:
        if not front or gain(it) > gain(front[-1]):
            front.append(it)
    return front


def _finite(x) -> bool:
    return x is not None and x == x and x not in (float("inf"), float("-inf"))
