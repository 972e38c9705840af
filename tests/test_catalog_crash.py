"""A writer SIGKILLed in the middle of save() leaves the previous catalog intact.

The writer is a real subprocess with the real MobileNetV2 embedder. To kill it at a known point
of save() (and not before or after), the child slows one step of the atomic write down: while
the faiss temp file is half written, or once written and fsynced but not yet renamed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from lens.index.demo import tux_stamps

WRITER = textwrap.dedent("""
    import json, os, sys, time
    import torch
    torch.set_num_threads(1)
    from pathlib import Path
    import numpy as np
    from lens.config import load_settings
    from lens.embed import create_embedder
    from lens.image import load_image_file
    from lens import files as storage
    from lens.index import open_catalog
    from lens.index.catalog import NewItem

    data_dir, stage, phase, paths = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
    settings = load_settings(data_dir=data_dir, embed={"backend": "mobilenetv2"})
    embedder = create_embedder(settings)
    queries = embedder.embed([load_image_file(p).rgb for p in paths[:4]])
    catalog = open_catalog(settings, embedder, create=True)
    if phase == "first":
        catalog.add_images([NewItem(Path(p), title=Path(p).stem) for p in paths[:-3]])
        catalog.save()
        results = catalog.search(queries, k=5, min_score=0.0)
        print(json.dumps([[m.model_dump() for m in row] for row in results]), flush=True)
        sys.exit(0)

    def stall(*args):
        print("STALLED", flush=True)
        time.sleep(600)

    if stage == "during-write":
        def half_then_stall(fh, data):
            fh.write(data[: len(data) // 2]); fh.flush(); stall()
        storage._write_chunks = half_then_stall
    else:  # before-rename: the temp file is complete and fsynced
        real_replace = os.replace
        def stall_on_vectors(src, dst):
            return stall() if "vectors-" in str(dst) else real_replace(src, dst)
        os.replace = stall_on_vectors
    catalog.remove([1, 2])
    catalog.update(3, title="changed")
    catalog.add_images([NewItem(Path(p)) for p in paths[-3:]])
    catalog.save()
""")


@pytest.fixture(scope="module")
def stamp_paths():
    stamps = tux_stamps()
    if not stamps:
        pytest.skip("Debian tuxpaint-stamps-default is not installed")
    return [str(s.path) for s in stamps[::30][:12]]


def run_writer(data_dir, stage, phase, paths, **kwargs):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.Popen(
        [sys.executable, "-c", WRITER, str(data_dir), stage, phase, *paths],
        stdout=subprocess.PIPE, text=True, env=env, **kwargs,
    )


@pytest.mark.slow
@pytest.mark.parametrize("stage", ["during-write", "before-rename"])
def test_writer_killed_mid_save_leaves_previous_index_intact(tmp_path, stamp_paths, stage):
    first = run_writer(tmp_path, stage, "first", stamp_paths)
    out, _ = first.communicate(timeout=300)
    assert first.returncode == 0
    expected = json.loads(out.strip().splitlines()[-1])

    writer = run_writer(tmp_path, stage, "second", stamp_paths)
    try:
        line = writer.stdout.readline()
        assert line.strip() == "STALLED", f"writer did not reach save(): {line!r}"
        temporaries = list((tmp_path / "catalog").glob(".vectors-*.tmp-*"))
        assert temporaries, "the kill must land while the new index is being written"
        writer.send_signal(signal.SIGKILL)
        writer.wait(timeout=30)
    finally:
        if writer.poll() is None:
            writer.kill()

    # Reopen in a fresh process (the same code path a restarted worker takes).
    check = run_writer(tmp_path, stage, "first", stamp_paths)
    out, _ = check.communicate(timeout=300)
    assert check.returncode == 0
    assert json.loads(out.strip().splitlines()[-1]) == expected
    assert json.loads((tmp_path / "catalog" / "catalog.json").read_text())["generation"] == 1
