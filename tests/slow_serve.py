"""`lens ...` with chosen pipeline stages slowed down, for the browser tests that must watch the
progress move (a photo is otherwise analysed faster than a page can be looked at).

    python tests/slow_serve.py --slow detect=2 --slow ocr=2 serve --embedded --port 8081

Each named Timer stage (lens.pipeline names: detect, saliency, embed, search, ocr, langid,
translate) sleeps that many seconds inside the stage, after the job has recorded it. Test code
only: nothing in lens/, workers/ or web/ reads these options.
"""

from __future__ import annotations

import sys
import time
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv: list[str]) -> int:
    delays: dict[str, float] = {}
    while len(argv) >= 2 and argv[0] == "--slow":
        name, _, seconds = argv[1].partition("=")
        delays[name] = float(seconds)
        argv = argv[2:]

    from workers.tasks import ProgressTimer

    original = ProgressTimer.stage

    @contextmanager
    def slowed(self, name: str):
        with original(self, name):
            time.sleep(delays.get(name, 0.0))
            yield

    ProgressTimer.stage = slowed
    from lens.cli import main as lens_main

    return lens_main(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
