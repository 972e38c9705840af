"""`make bench`: runs every bench/bench_*.py module, prints its tables, writes bench/RESULTS.md.

A benchmark module defines `run(ctx: BenchContext) -> list[Table]`. Figures that depend on the
machine are printed next to a baseline measured in the same run, as ratios, because these
machines are shared and noisy.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
SHARED = REPO_ROOT.parent / "shared"
OSIE_DIR = SHARED / "data" / "osie"


def single_thread() -> None:
    """One compute thread per library, as in one Celery child on a 2-core worker."""
    import cv2
    import torch

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)
    cv2.setNumThreads(1)


def paste_off_centre(background, stamp, rng) -> tuple[object, tuple[int, int, int, int]]:
    """Paste an RGBA stamp (PIL) onto a background (PIL, RGB) at 15-35% of its width, the
    stamp's centre outside the middle 40% box; returns (background, the stamp's opaque box)."""
    from PIL import Image

    w = int(background.width * rng.uniform(0.15, 0.35))
    h = max(8, int(stamp.height * w / stamp.width))
    if h > background.height * 0.6:
        h = int(background.height * 0.6)
        w = max(8, int(stamp.width * h / stamp.height))
    stamp = stamp.resize((w, h), Image.Resampling.LANCZOS)
    opaque = stamp.getbbox() or (0, 0, w, h)
    for _try in range(20):
        x = int(rng.integers(0, background.width - w))
        y = int(rng.integers(0, background.height - h))
        cx, cy = (x + w / 2) / background.width - 0.5, (y + h / 2) / background.height - 0.5
        if max(abs(cx), abs(cy)) > 0.2:
            break
    background.paste(stamp, (x, y), stamp)
    return background, (x + opaque[0], y + opaque[1], x + opaque[2], y + opaque[3])


@dataclass
class BenchContext:
    # --quick: fewer photos/iterations, for a smoke run (e.g. in tests).
    quick: bool = False
    # --every N: keep every Nth photo of each half, where a benchmark supports it (bench_grocery:
    # its full run takes ~55 min on a quiet machine); 1 = all.
    every: int = 1
    work_dir: Path = field(default_factory=lambda: REPO_ROOT / "var" / "bench")


@dataclass
class Table:
    title: str
    columns: list[str]
    rows: list[list[object]]
    notes: str = ""

    def to_markdown(self) -> str:
        def fmt(value: object) -> str:
            if isinstance(value, float):
                return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"
            return str(value)

        lines = [f"### {self.title}", ""]
        lines.append("| " + " | ".join(self.columns) + " |")
        lines.append("|" + "---|" * len(self.columns))
        for row in self.rows:
            lines.append("| " + " | ".join(fmt(v) for v in row) + " |")
        if self.notes:
            lines += ["", self.notes]
        return "\n".join(lines) + "\n"
