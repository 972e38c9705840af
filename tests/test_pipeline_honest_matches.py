"""A dot lists only matches above the calibrated floor and takes a confident match's title."""

from __future__ import annotations

from lens.config import IndexConfig
from lens.pipeline import honest_matches
from lens.types import Match, Region

CARTON = Region(id=0, box=(0, 0, 10, 10), kind="object", label="book", score=1.0)


def test_weak_matches_are_dropped_and_the_dot_says_no_close_match():
    config = IndexConfig(match_floor=0.6, label_floor=0.65)
    region = honest_matches(CARTON, [Match(item_id=1, score=0.55, title="Kettle")], config)
    assert region.matches == [] and region.no_close_match and region.label == "book"


def test_a_confident_top_match_names_the_dot():
    config = IndexConfig(match_floor=0.6, label_floor=0.65)
    matches = [Match(item_id=1, score=0.7, title="Arla milk 1.5%"), Match(item_id=2, score=0.61, title="Arla milk 3%"),
               Match(item_id=3, score=0.5, title="Banana")]
    region = honest_matches(CARTON, matches, config)
    assert [m.item_id for m in region.matches] == [1, 2] and not region.no_close_match
    assert region.label == "Arla milk 1.5%"
    # Above the floor but not confident: listed, and the label stays the detector's.
    region = honest_matches(CARTON, matches[1:], config)
    assert [m.item_id for m in region.matches] == [2] and region.label == "book"
