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


@dataclass
class BenchContext:
    # --quick: fewer photos/iterations, for a smoke run (e.g. in tests).
    quick: bool = False
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
