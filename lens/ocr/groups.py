"""Grouping items that are linked pairwise (transitively): lines into blocks, lines into
orientation groups."""

from __future__ import annotations

from collections.abc import Callable


def connected_groups(n: int, linked: Callable[[int, int], bool]) -> list[list[int]]:
    """Indices 0..n-1 grouped so that i and j share a group when a chain of linked pairs joins
    them; groups in order of their first member, members ascending."""
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i in range(n):
        for j in range(i + 1, n):
            if find(i) != find(j) and linked(i, j):
                parent[find(i)] = find(j)
    groups: dict[int, list[int]] = {}
    for i in range(n):
        groups.setdefault(find(i), []).append(i)
    return list(groups.values())
