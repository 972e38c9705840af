"""The demo catalog: photo cut-outs from Debian's tuxpaint-stamps-default (GPL-2).

A stamp is <category>/<sub>/.../<name>.png with a caption in <name>.txt (English first line).
We keep the raster stamps that have no SVG twin (those are rendered drawings), skip mirrored
copies, and leave out symbols/ (letters, digits, money) and cartoon/ folders, which are drawings.
An item's class is its folder, at most two levels deep (e.g. animals/birds).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

TUX_STAMPS = Path("/usr/share/tuxpaint/stamps")
LICENCE = "GPL-2.0-or-later (Debian package tuxpaint-stamps-default, Tux Paint stamps)"
SKIPPED_TOP = {"symbols"}
# extra["source"] of every demo item: how `lens index remove --demo` tells them from yours.
DEMO_SOURCE = "tuxpaint-stamps-default"


@dataclass(frozen=True)
class Stamp:
    path: Path
    title: str
    label: str  # class: its folder, at most two levels deep


def caption(png: Path) -> str:
    """The stamp's English caption ("A badger."), or its file name when it has none."""
    txt = png.with_suffix(".txt")
    if txt.is_file():
        for line in txt.read_text(encoding="utf-8", errors="replace").splitlines():
            line = line.strip()
            if line and "=" not in line.split(" ", 1)[0]:
                return line.rstrip(".")
    return png.stem.replace("_", " ").replace("-", " ")


def tux_stamps(root: Path = TUX_STAMPS) -> list[Stamp]:
    """Photo stamps under `root`, sorted by path (empty when the package is not installed)."""
    stamps = []
    for png in sorted(root.rglob("*.png")):
        parts = png.relative_to(root).parts
        if (
            parts[0] in SKIPPED_TOP
            or "cartoon" in parts
            or png.stem.endswith("_mirror")
            or png.with_suffix(".svg").exists()
        ):
            continue
        folders = parts[:-1]
        stamps.append(Stamp(png, caption(png), "/".join(folders[:2])))
    return stamps
