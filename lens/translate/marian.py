"""Hugging Face seq2seq translation models (MarianMT, NLLB, M2M100) from local folders only.

Folders under <models_dir>/marian/ (never fetched from the hub at run time):
- `<src>-<dst>/`  a one-pair model, e.g. a saved Helsinki-NLP/opus-mt-en-de;
- any other folder holding a multilingual NLLB or M2M100 model plus `languages.txt`, the
  ISO 639-1 codes it should serve (one per line or space-separated); every pair among them.
"""

from __future__ import annotations

import re
import threading
from pathlib import Path

from lens.config import Settings
from lens.errors import LensError, ModelMissingError

_PAIR_DIR = re.compile(r"^([a-z]{2,3})-([a-z]{2,3})$")
# NLLB names languages by FLORES-200 code.
NLLB_CODES = {
    "en": "eng_Latn", "pt": "por_Latn", "es": "spa_Latn", "fr": "fra_Latn", "de": "deu_Latn",
    "it": "ita_Latn", "nl": "nld_Latn", "vi": "vie_Latn", "zh": "zho_Hans", "ja": "jpn_Jpan",
    "ko": "kor_Hang", "ru": "rus_Cyrl", "ar": "arb_Arab", "tr": "tur_Latn", "pl": "pol_Latn",
    "id": "ind_Latn", "sv": "swe_Latn", "th": "tha_Thai", "hi": "hin_Deva", "uk": "ukr_Cyrl",
}
MAX_NEW_TOKENS = 256


class _LocalModel:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._loaded = None
        self._lock = threading.Lock()

    def kind(self) -> str:
        import json

        return json.loads((self.folder / "config.json").read_text()).get("model_type", "")

    def _load(self):
        if self._loaded is None:
            from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

            try:
                tokenizer = AutoTokenizer.from_pretrained(self.folder, local_files_only=True)
                model = AutoModelForSeq2SeqLM.from_pretrained(self.folder, local_files_only=True)
            except (OSError, ValueError) as exc:
                raise ModelMissingError(f"cannot load the translation model in {self.folder}: {exc}") from None
            model.eval()
            self._loaded = (tokenizer, model)
        return self._loaded

    def generate(self, texts: list[str], src: str, dst: str) -> list[str]:
        import torch

        with self._lock:  # one generate at a time per model: they would only fight for cores
            tokenizer, model = self._load()
            kind = model.config.model_type
            kwargs = {}
            if kind == "m2m_100":
                tokenizer.src_lang = src
                kwargs["forced_bos_token_id"] = tokenizer.get_lang_id(dst)
            elif kind == "nllb" or "nllb" in type(tokenizer).__name__.lower():
                tokenizer.src_lang = NLLB_CODES[src]
                kwargs["forced_bos_token_id"] = tokenizer.convert_tokens_to_ids(NLLB_CODES[dst])
            batch = tokenizer(texts, return_tensors="pt", padding=True, truncation=True, max_length=512)
            with torch.inference_mode():
                # Never past the decoder's positions: a model that emits no end token would index out.
                limit = min(MAX_NEW_TOKENS, getattr(model.config, "max_position_embeddings", 1024) - 1)
                out = model.generate(**batch, max_new_tokens=limit, num_beams=1, **kwargs)
            return [t.strip() for t in tokenizer.batch_decode(out, skip_special_tokens=True)]


class MarianTranslator:
    name = "marian"
    version = "transformers"

    @staticmethod
    def model_files(settings: Settings) -> list[Path]:
        return [settings.model_dir / "marian"]

    def __init__(self, settings: Settings) -> None:
        self._models: dict[tuple[str, str], _LocalModel] = {}
        root = settings.model_dir / "marian"
        if not root.is_dir():
            return
        for folder in sorted(p for p in root.iterdir() if (p / "config.json").is_file()):
            model = _LocalModel(folder)
            m = _PAIR_DIR.match(folder.name.lower())
            if m:
                self._models[(m.group(1), m.group(2))] = model
                continue
            listing = folder / "languages.txt"
            if listing.is_file():
                codes = listing.read_text().split()
                for src in codes:
                    for dst in codes:
                        if src != dst:
                            self._models.setdefault((src, dst), model)

    def pairs(self) -> set[tuple[str, str]]:
        return set(self._models)

    def translate(self, texts: list[str], src: str, dst: str) -> list[str]:
        if not texts:
            return []
        model = self._models.get((src, dst))
        if model is None:
            raise ModelMissingError(f"no local translation model for {src}->{dst} under models/marian/")
        try:
            return model.generate(list(texts), src, dst)
        except KeyError as exc:
            raise LensError(f"{model.folder.name} has no language code for {exc}") from None
