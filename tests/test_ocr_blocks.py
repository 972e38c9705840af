"""Grouping lines into blocks and reading order, on hand-placed line polygons (no model)."""

from __future__ import annotations

import pytest

from lens.ocr.blocks import group_lines
from lens.types import TextLine


def line(text: str, x: float, y: float, w: float = 200, h: float = 30, turn: int = 0, size: tuple[int, int] = (1000, 1000)) -> TextLine:
    """An upright line at (x, y), then the whole page turned `turn` x 90 deg clockwise."""
    pts = [(x, y), (x + w, y), (x + w, y + h), (x, y + h)]
    width, height = size
    for _ in range(turn):
        pts = [(height - py, px) for px, py in pts]
        width, height = height, width
    return TextLine(polygon=pts, text=text, confidence=0.9)


def test_no_lines_no_blocks():
    assert group_lines([]) == []


@pytest.mark.parametrize("turn", [0, 1, 2, 3])
def test_a_sign_and_a_far_label_make_two_blocks_in_reading_order(turn):
    lines = [
        line("second line", 100, 145, turn=turn),
        line("far label", 600, 800, w=150, turn=turn),
        line("first line", 100, 100, turn=turn),
    ]
    blocks = group_lines(lines)
    texts = sorted(b.text for b in blocks)
    assert texts == ["far label", "first line\nsecond line"]
    assert [b.id for b in blocks] == [1, 2]
    sign = next(b for b in blocks if b.text.startswith("first"))
    assert [ln.text for ln in sign.lines] == ["first line", "second line"]
    assert len(sign.polygon) == 4


def test_words_side_by_side_join_on_one_row_and_cjk_joins_without_space():
    blocks = group_lines([line("Fresh", 100, 100, w=80), line("coffee", 200, 100, w=90)])
    assert [b.text for b in blocks] == ["Fresh coffee"]
    blocks = group_lines([line("欢迎", 100, 100, w=60), line("光临", 175, 100, w=60)])
    assert [b.text for b in blocks] == ["欢迎光临"]


def test_lines_far_apart_or_of_different_size_stay_apart():
    blocks = group_lines([line("Title", 100, 100, h=80), line("small print", 100, 190, h=20), line("far", 100, 600)])
    assert len(blocks) == 3
    assert [b.text for b in blocks] == ["Title", "small print", "far"]


def test_block_confidence_is_the_length_weighted_mean():
    a = TextLine(polygon=[(0, 0), (100, 0), (100, 20), (0, 20)], text="aaaa", confidence=1.0)
    b = TextLine(polygon=[(0, 25), (100, 25), (100, 45), (0, 45)], text="b", confidence=0.5)
    (block,) = group_lines([a, b])
    assert block.confidence == pytest.approx(0.9)


def test_three_signs_side_by_side_or_diagonal_stay_three_blocks():
    # Three shop signs on one facade, a sign's width apart (gaps of 1.3 heights).
    facade = [line("BAKERY", 100, 100, w=180, h=40), line("PHARMACY", 332, 100, w=240, h=40),
              line("BANK", 624, 100, w=120, h=40)]
    assert len(group_lines(facade)) == 3
    # A label below and to the right of a sign, not under it.
    diagonal = [line("Exit", 100, 100, w=100, h=30), line("Gate 4", 215, 150, w=120, h=30)]
    assert len(group_lines(diagonal)) == 2
    # A short last line of a left-aligned sign still belongs to it.
    sign = [line("Welcome to the market", 100, 100, w=330, h=30), line("Open", 100, 145, w=70, h=30)]
    assert [b.text for b in group_lines(sign)] == ["Welcome to the market\nOpen"]
