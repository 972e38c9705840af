"""Installing Firefox (Bergamot) translation models: downloaded from a mirror, or imported from
a folder or tarball on an air-gapped machine. Both end the same way: every file checked
against its SHA-256, then the pair's folder moved into <models_dir>/bergamot/ in one rename, so
that a failed download or a wrong checksum leaves nothing half-installed.

A mirror (and an import folder) holds SHA256SUMS, in `sha256sum` format, whose names are
"<pair>/<file>" (e.g. "fren/model.fren.intgemm.alphas.bin"), and those files; a name ending in
.gz is checked as it is and unpacked after (mozilla/firefox-translations-models ships them
gzipped). Make one on a connected machine with `sha256sum */* > SHA256SUMS` in the folder of
pair folders.
"""

from __future__ import annotations

import gzip
import os
import re
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path

from lens.config import Settings
from lens.errors import BadInputError, LensError
from lens.models import file_sha256
from lens.translate.bergamot import FirefoxModel

SUMS_FILE = "SHA256SUMS"
_PAIR = re.compile(r"^([a-z]{2,3})-?([a-z]{2,3})$")
_SUM_LINE = re.compile(r"^([0-9a-fA-F]{64})\s+\*?(\S+)$")
# Only model files travel: a name elsewhere in SHA256SUMS is ignored, a path outside the
# pair's folder refused.
_FILE = re.compile(r"^[A-Za-z0-9._-]+$")


def pair_folder(pair: str) -> str:
    """'fr-en' or 'fren' -> 'fren'; BadInputError for anything else."""
    m = _PAIR.match(pair.strip().lower())
    if not m:
        raise BadInputError(f"'{pair}' is not a language pair such as fr-en")
    return m.group(1) + m.group(2)


def parse_sums(text: str, origin: str) -> dict[str, dict[str, str]]:
    """{pair folder: {file name: sha256}} from SHA256SUMS text."""
    pairs: dict[str, dict[str, str]] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        m = _SUM_LINE.match(line)
        if not m:
            raise LensError(f"{origin} line {number}: not '<sha256>  <pair>/<file>': {line[:80]!r}")
        digest, name = m.group(1).lower(), m.group(2).removeprefix("./")
        parts = name.split("/")
        if len(parts) != 2 or not _PAIR.match(parts[0]) or not _FILE.match(parts[1]):
            continue
        pairs.setdefault(parts[0], {})[parts[1]] = digest
    return pairs


def _unpack(folder: Path) -> None:
    for packed in sorted(folder.glob("*.gz")):
        with gzip.open(packed, "rb") as src, open(packed.with_suffix(""), "wb") as dst:
            shutil.copyfileobj(src, dst)
        packed.unlink()


def _install(staging: Path, pair: str, settings: Settings) -> Path:
    """Check that staging holds a usable model for `pair`, then move it into place."""
    _unpack(staging)
    m = _PAIR.match(pair)
    if FirefoxModel.from_dir(staging, m.group(1), m.group(2)) is None:
        raise LensError(f"{pair}: the files are not a Firefox model (need model.*.bin and vocab.*.spm)")
    root = settings.model_dir / "bergamot"
    target = root / pair
    old = None
    if target.exists():
        old = root / f".old-{pair}-{os.getpid()}"
        os.replace(target, old)
    os.replace(staging, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return target


def _staging_dir(settings: Settings, pair: str) -> Path:
    root = settings.model_dir / "bergamot"
    root.mkdir(parents=True, exist_ok=True)
    # Same file system as the target, so that the final rename is atomic; the dot keeps
    # discover_models from seeing a half-filled folder.
    return Path(tempfile.mkdtemp(prefix=f".incoming-{pair}-", dir=root))


def _url(mirror: str, name: str) -> str:
    return mirror.rstrip("/") + "/" + urllib.parse.quote(name)


def _download(url: str, dest: Path, timeout: float) -> None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp, dest.open("wb") as out:
            shutil.copyfileobj(resp, out)
    except urllib.error.HTTPError as exc:
        raise LensError(f"could not download {url}: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise LensError(f"could not download {url}: {reason}") from None


def _select(available: dict[str, dict[str, str]], wanted: list[str], origin: str) -> list[str]:
    if wanted == ["all"]:
        if not available:
            raise LensError(f"{origin} lists no model files")
        return sorted(available)
    chosen = []
    for pair in wanted:
        folder = pair_folder(pair)
        if folder not in available:
            listed = ", ".join(sorted(available)) or "none"
            raise LensError(f"{origin} has no files for {pair} (pairs listed: {listed})")
        chosen.append(folder)
    return chosen


def fetch_pairs(
    settings: Settings, pairs: list[str], mirror: str | None = None, log: Callable[[str], None] = print, timeout: float = 60.0
) -> list[Path]:
    """Download, verify and install the named pairs (or ["all"]) from the mirror."""
    mirror = mirror or settings.translate.model_mirror
    if not mirror:
        raise BadInputError("no mirror for translation models: set translate.model_mirror (LENS_TRANSLATE__MODEL_MIRROR) or pass --mirror URL")
    sums_url = _url(mirror, SUMS_FILE)
    with tempfile.TemporaryDirectory() as tmp:
        sums_path = Path(tmp) / SUMS_FILE
        _download(sums_url, sums_path, timeout)
        available = parse_sums(sums_path.read_text(encoding="utf-8", errors="replace"), sums_url)
    installed = []
    for pair in _select(available, pairs, sums_url):
        staging = _staging_dir(settings, pair)
        try:
            for name, digest in sorted(available[pair].items()):
                url = _url(mirror, f"{pair}/{name}")
                log(f"  {url}")
                _download(url, staging / name, timeout)
                got = file_sha256(staging / name)
                if got != digest:
                    raise LensError(f"{url}: checksum mismatch (expected {digest[:12]}..., got {got[:12]}...); nothing installed for {pair}")
            installed.append(_install(staging, pair, settings))
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return installed


def import_models(settings: Settings, source: Path, log: Callable[[str], None] = print) -> list[Path]:
    """Install every pair in a folder or tarball laid out like a mirror (SHA256SUMS + files)."""
    source = Path(source)
    if not source.exists():
        raise BadInputError(f"{source}: no such file or folder")
    with tempfile.TemporaryDirectory() as tmp:
        folder = source
        if source.is_file():
            try:
                with tarfile.open(source) as tar:
                    tar.extractall(tmp, filter="data")  # refuses absolute paths, .., links out
            except (tarfile.TarError, OSError) as exc:
                raise BadInputError(f"{source}: not a readable tarball ({exc})") from None
            folder = Path(tmp)
            entries = [p for p in folder.iterdir()]
            if SUMS_FILE not in {p.name for p in entries} and len(entries) == 1 and entries[0].is_dir():
                folder = entries[0]  # a tarball of the folder itself
        sums = folder / SUMS_FILE
        if not sums.is_file():
            raise BadInputError(f"{source}: no {SUMS_FILE} (make one with `sha256sum */* > {SUMS_FILE}`)")
        available = parse_sums(sums.read_text(encoding="utf-8", errors="replace"), str(sums))
        installed = []
        for pair in _select(available, ["all"], str(sums)):
            staging = _staging_dir(settings, pair)
            try:
                for name, digest in sorted(available[pair].items()):
                    path = folder / pair / name
                    if not path.is_file():
                        raise LensError(f"{path}: listed in {SUMS_FILE} but missing; nothing installed for {pair}")
                    shutil.copyfile(path, staging / name)
                    got = file_sha256(staging / name)
                    if got != digest:
                        raise LensError(f"{path}: checksum mismatch (expected {digest[:12]}..., got {got[:12]}...); nothing installed for {pair}")
                log(f"  {pair}: {len(available[pair])} files verified")
                installed.append(_install(staging, pair, settings))
            finally:
                shutil.rmtree(staging, ignore_errors=True)
    return installed
