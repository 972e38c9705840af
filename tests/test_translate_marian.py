"""The marian backend's loading path, with a tiny random-weight MarianMT model made in the test.

The output of a random model is meaningless; only loading, routing and the shape of the
answer are checked here. Real Marian/NLLB weights are not shipped by any registry.
"""

from __future__ import annotations

import json

import pytest

from lens.config import load_settings

pytestmark = pytest.mark.slow

CORPUS = ["emergency exit", "no smoking", "closed on sundays", "wet floor", "push to open", "saída de emergência"] * 20


@pytest.fixture(scope="module")
def tiny_marian_dir(tmp_path_factory):
    import sentencepiece as spm
    import torch
    from transformers import MarianConfig, MarianMTModel, MarianTokenizer

    data = tmp_path_factory.mktemp("data")
    folder = data / "models" / "marian" / "en-pt"
    folder.mkdir(parents=True)
    corpus = folder / "corpus.txt"
    corpus.write_text("\n".join(CORPUS))
    spm.SentencePieceTrainer.train(input=str(corpus), model_prefix=str(folder / "sp"), vocab_size=40, model_type="bpe",
                                   unk_id=1, eos_id=0, bos_id=-1, pad_id=-1, minloglevel=2)
    for name in ("source.spm", "target.spm"):
        (folder / name).write_bytes((folder / "sp.model").read_bytes())
    sp = spm.SentencePieceProcessor(model_file=str(folder / "sp.model"))
    vocab = {sp.id_to_piece(i): i for i in range(sp.get_piece_size())}
    vocab["<pad>"] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    tokenizer = MarianTokenizer(str(folder / "source.spm"), str(folder / "target.spm"), str(folder / "vocab.json"),
                                source_lang="en", target_lang="pt")
    torch.manual_seed(0)
    config = MarianConfig(vocab_size=len(vocab), d_model=16, encoder_layers=1, decoder_layers=1,
                          encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=32,
                          decoder_ffn_dim=32, max_position_embeddings=64, pad_token_id=vocab["<pad>"],
                          eos_token_id=vocab["</s>"], decoder_start_token_id=vocab["<pad>"])
    MarianMTModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return data


def test_marian_loads_tiny_random_weights_from_the_models_dir(tiny_marian_dir):
    from lens.translate.marian import MarianTranslator

    translator = MarianTranslator(load_settings(data_dir=tiny_marian_dir))
    assert translator.pairs() == {("en", "pt")}
    out = translator.translate(["emergency exit", "wet floor"], "en", "pt")
    assert len(out) == 2 and all(isinstance(t, str) for t in out)


def test_service_uses_marian_tiny_random_weights_for_a_pair_bergamot_lacks(tiny_marian_dir):
    from lens.translate import create_translation_service

    settings = load_settings(data_dir=tiny_marian_dir, translate={"backend": "marian"})
    service = create_translation_service(settings)
    backend, _, _ = service.route("en", "pt")[0]
    assert backend.name == "marian"  # the configured backend is asked first
    assert service.route("pt", "en")[0][0].name == "bergamot"  # and bergamot fills the gap


def test_marian_without_models_has_no_pairs_and_says_so(tmp_path):
    from lens.errors import ModelMissingError
    from lens.translate.marian import MarianTranslator

    translator = MarianTranslator(load_settings(data_dir=tmp_path))
    assert translator.pairs() == set()
    with pytest.raises(ModelMissingError, match="models/marian"):
        translator.translate(["hello"], "en", "de")
