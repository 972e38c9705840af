"""Shared fixtures: real photos, settings in a temporary data dir, and thread limits.

Prepared models stay in the repository's var/models (made by `make setup`); everything a test
writes goes to a temporary data dir.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# 2-core machines: one thread per library, or tests fight each other for cores.
for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = REPO_ROOT.parent / "shared"
OSIE_STIMULI = SHARED / "data" / "osie" / "stimuli"


def _ultralytics_asset(name: str) -> Path:
    import importlib.util

    spec = importlib.util.find_spec("ultralytics")
    assert spec and spec.submodule_search_locations, "ultralytics is not installed"
    return Path(next(iter(spec.submodule_search_locations))) / "assets" / name


@pytest.fixture(scope="session")
def bus_jpg() -> Path:
    return _ultralytics_asset("bus.jpg")


@pytest.fixture(scope="session")
def zidane_jpg() -> Path:
    return _ultralytics_asset("zidane.jpg")


@pytest.fixture(scope="session")
def osie_photos() -> list[Path]:
    photos = sorted(OSIE_STIMULI.glob("*.jpg"))
    if not photos:
        pytest.skip(f"OSIE photos not found at {OSIE_STIMULI}")
    return photos


@pytest.fixture(scope="session")
def tux_stamps():
    """Debian's Tux Paint photo stamps, as the demo catalog picks them."""
    from lens.index.demo import tux_stamps as find_stamps

    found = find_stamps()
    if not found:
        pytest.skip("Debian tuxpaint-stamps-default is not installed (make setup installs it)")
    return found


@pytest.fixture(scope="module")
def embedder():
    """A real embedder that loads fast (MobileNetV2), for catalog backends' tests."""
    from lens.config import load_settings
    from lens.embed import create_embedder

    return create_embedder(load_settings(embed={"backend": "mobilenetv2"}))


@pytest.fixture(scope="module")
def stamp_vectors(embedder, stamps):
    """Vectors of the requesting module's own `stamps` fixture."""
    from lens.image import load_image_file

    return embedder.embed([load_image_file(s.path).rgb for s in stamps])


@pytest.fixture
def lens_env(tmp_path, monkeypatch):
    """LENS_* environment for a test: a temporary data dir, the shared prepared models."""
    from lens.config import REPO_ROOT as root
    from lens.config import get_settings

    for key in [k for k in os.environ if k.startswith("LENS_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("LENS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("LENS_MODELS_DIR", str(root / "var" / "models"))
    monkeypatch.chdir(tmp_path)
    get_settings.cache_clear()
    yield tmp_path
    get_settings.cache_clear()


@pytest.fixture
def settings(lens_env):
    from lens.config import load_settings

    return load_settings()


# -- the browser tests (tests/test_ui_*.py): one Chromium per module, the static page server --
@pytest.fixture(scope="module")
def browser():
    playwright_sync = pytest.importorskip("playwright.sync_api")
    from ui_server import launch_chromium

    with playwright_sync.sync_playwright() as pw:
        browser = launch_chromium(pw)
        yield browser
        browser.close()


@pytest.fixture
def static_ui():
    from ui_server import StaticUi

    with StaticUi() as ui:
        yield ui
