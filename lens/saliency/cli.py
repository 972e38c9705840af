"""`lens saliency train` and `lens saliency eval`. Cheap to import: torch loads inside the commands."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

DEFAULT_WEIGHTS = Path("models/saliency/learned-saliency-effl2.pt")


def cmd_train(args: argparse.Namespace) -> int:
    import torch

    from lens.saliency.train import TrainConfig, train

    if args.threads:
        torch.set_num_threads(args.threads)
    config = TrainConfig(
        osie_dir=args.osie_dir,
        out=args.out,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        device=args.device,
        limit=args.limit,
    )
    train(config)
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    import torch

    from lens.saliency.learned import LearnedSaliency
    from lens.saliency.train import evaluate_maps, test_images

    torch.set_num_threads(args.threads)
    images = test_images(args.osie_dir, limit=args.limit)
    model = LearnedSaliency.from_weights(args.weights)
    scores = evaluate_maps(model.map, images)
    print(json.dumps({"weights": str(args.weights), "photos": len(images), **scores}, indent=2))
    return 0


def add_commands(subparsers) -> None:
    parser = subparsers.add_parser("saliency", help="train or evaluate the learned saliency model")
    sub = parser.add_subparsers(dest="saliency_command", required=True)

    p = sub.add_parser("train", help="train the saliency decoder on OSIE fixations (frozen encoder)")
    p.add_argument("--osie-dir", type=Path, help="OSIE root (default ../shared/data/osie)")
    p.add_argument("--out", type=Path, default=DEFAULT_WEIGHTS)
    p.add_argument("--epochs", type=int, default=24)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    p.add_argument("--limit", type=int, help="only the first N train/validation photos (smoke run)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("eval", help="NSS, CC, AUC-Judd, sAUC, KLD, SIM on the 100 OSIE test photos")
    p.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS)
    p.add_argument("--osie-dir", type=Path, help="OSIE root (default ../shared/data/osie)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--limit", type=int, help="only the first N test photos")
    p.set_defaults(func=cmd_eval)
