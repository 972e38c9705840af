"""Training the saliency decoder: the split, the loss, a tiny real run, the CLI."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lens.saliency import train as T
from lens.saliency.net import NetConfig, SaliencyDecoder


def test_split_is_500_100_100_by_sorted_id():
    from lens.saliency.osie import load_osie

    train, val, test = T.split_osie(load_osie())
    ids = [im.id for im in train + val + test]
    assert (len(train), len(val), len(test)) == (500, 100, 100)
    assert ids == sorted(ids) and len(set(ids)) == 700


def test_kld_loss_is_zero_for_the_target_itself_and_positive_otherwise():
    target = torch.rand(2, 12, 16) ** 4
    perfect = torch.log(target.reshape(2, -1) / target.reshape(2, -1).sum(1, keepdim=True)).reshape(2, 1, 12, 16)
    uniform = torch.full((2, 1, 12, 16), -math.log(12 * 16))
    assert float(T.kld_loss(perfect, target)) == pytest.approx(0.0, abs=1e-5)
    assert float(T.kld_loss(uniform, target)) > 0.1


@pytest.mark.parametrize("size", [(64, 48), (40, 72)])
def test_decoder_random_init_gives_a_distribution_at_the_input_size(size):
    torch.manual_seed(0)
    decoder = SaliencyDecoder(NetConfig()).eval()
    w, h = size
    low, high = torch.randn(1, 48, h // 8, w // 8), torch.randn(1, 472, h // 16, w // 16)
    with torch.no_grad():
        out = decoder(low, high, (h, w))
    assert out.shape == (1, 1, h, w)
    assert float(out.exp().sum()) == pytest.approx(1.0, abs=1e-4)


def test_tiny_training_run_on_real_osie_photos_is_reproducible(tmp_path):
    torch.set_num_threads(1)
    runs = []
    for name in ("a", "b"):
        config = T.TrainConfig(out=tmp_path / f"{name}.pt", epochs=1, batch_size=2, limit=2, scales=(1.0,),
                               base_size=(192, 144), seed=3)
        meta = T.train(config, log=lambda _m: None)
        runs.append(meta)
    assert runs[0]["history"] == runs[1]["history"]
    assert set(runs[0]["history"][0]) == {"epoch", "train_kld", "val_NSS", "val_CC", "val_KLD"}
    decoder, meta = T.load_decoder(tmp_path / "a.pt")
    assert meta["best"]["epoch"] == 1 and meta["train_config"]["seed"] == 3
    state_a = torch.load(tmp_path / "a.pt", weights_only=True)["state_dict"]
    state_b = torch.load(tmp_path / "b.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(state_a[k], state_b[k]) for k in state_a)


def test_cli_has_train_and_eval_commands():
    from lens.cli import build_parser

    parser = build_parser()
    args = parser.parse_args(["saliency", "train", "--epochs", "3", "--limit", "4"])
    assert args.epochs == 3 and args.limit == 4 and args.func.__name__ == "cmd_train"
    args = parser.parse_args(["saliency", "eval", "--limit", "2"])
    assert args.func.__name__ == "cmd_eval"


def test_scaled_sizes_are_multiples_of_16():
    for scale in (0.75, 1.0, 1.25):
        assert all(v % 16 == 0 for v in T.scaled_size(T.BASE_SIZE, scale))
    assert np.isclose(T.scaled_size(T.BASE_SIZE, 1.0), T.BASE_SIZE).all()
