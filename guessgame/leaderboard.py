"""The leaderboard kept in rank order, so that its top costs the same at any size.

Every name that ever won under a chosen name stays on the board, so it
only grows.  `Leaderboard` keeps it sorted (a `sortedcontainers.SortedList`
of rank keys beside a dict by name): ``top`` reads the first K in
O(K log n) and a win moves one entry in O(log n), instead of a scan of the
whole board for every ``top``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from itertools import islice

from sortedcontainers import SortedList

from guessgame.store.base import LeaderboardEntry

__all__ = ["Leaderboard"]

#: An entry's place: most wins, then best (fewest guesses), then the name
#: without regard to case (unique on the board), then the entry itself,
#: which the unique name keeps from ever being compared.
_Rank = tuple[int, int, str, LeaderboardEntry]


def _rank(entry: LeaderboardEntry) -> _Rank:
    return (-entry.wins, entry.best, entry.name.lower(), entry)


class Leaderboard:
    """The standings: one entry per name (without regard to case), in rank order."""

    def __init__(self, entries: Iterable[LeaderboardEntry] = ()) -> None:
        self._by_key: dict[str, _Rank] = {}
        for entry in entries:
            self._by_key[entry.name.lower()] = _rank(entry)
        # Sorted once here; from then on one entry moves at a time.
        self._ranked = SortedList(self._by_key.values())

    def __len__(self) -> int:
        return len(self._by_key)

    def __iter__(self) -> Iterator[LeaderboardEntry]:
        """Every entry, best first."""
        return (rank[3] for rank in self._ranked)

    def get(self, name: str) -> LeaderboardEntry | None:
        """The entry of ``name`` (any case), or None."""
        rank = self._by_key.get(name.lower())
        return rank[3] if rank is not None else None

    def record(self, entry: LeaderboardEntry) -> None:
        """Put ``entry`` in place of its name's entry, or add it."""
        key = entry.name.lower()
        rank = _rank(entry)
        old = self._by_key.get(key)
        if old is not None:
            self._ranked.remove(old)
        self._by_key[key] = rank
        self._ranked.add(rank)

    def top(self, limit: int) -> list[LeaderboardEntry]:
        """The first ``limit`` entries, best first."""
        return [rank[3] for rank in islice(self._ranked, limit)]
