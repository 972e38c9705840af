"""The `lens` command line. Exit codes: 0 ok, 1 other error, 2 bad input, 3 missing model."""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from importlib.metadata import entry_points
from pathlib import Path

from lens.config import ConfigError
from lens.errors import LensError

# Modules that add their own subcommands with `add_commands(subparsers)`. They must stay cheap
# to import (no torch/faiss at module level) so that `lens --help` is instant.
COMMAND_MODULES = ("lens.index.cli", "lens.saliency.cli")
# Commands of the floors above lens (`lens serve` from web/) register as entry points of this
# group in pyproject.toml, so that lens itself never imports them.
COMMAND_ENTRY_POINTS = "lens.commands"


def _settings():
    from lens.config import get_settings

    return get_settings()


def cmd_models_list(args: argparse.Namespace) -> int:
    from lens.models import load_manifest

    settings = _settings()
    specs = load_manifest()
    if args.json:
        rows = []
        for s in specs:
            path = s.locate(settings) or s.expected_path(settings)
            rows.append({
                "name": s.name, "stage": s.stage, "default": s.default, "ready": s.is_ready(settings),
                "path": None if s.builtin else str(path), "source": s.source, "licence": s.licence,
            })
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'model':24} {'stage':10} {'default':8} {'status':8} location / source")
    for s in specs:
        status = "ready" if s.is_ready(settings) else "missing"
        where = "built in" if s.builtin else str(s.locate(settings) or s.expected_path(settings) or "-")
        print(f"{s.name:24} {s.stage:10} {'yes' if s.default else 'no':8} {status:8} {where}")
        print(f"{'':24} {'':10} {'':8} {'':8} source: {s.source}; licence: {s.licence}")
    return 0


def cmd_models_prepare(args: argparse.Namespace) -> int:
    from lens.models import fetch, get_spec, prepare

    settings = _settings()
    pairs = [name.split(":", 1)[1] for name in args.fetch or [] if name.startswith("translate:")]
    if pairs:
        from lens.translate.install import fetch_pairs

        print(f"fetching translation models {', '.join(pairs)} ...")
        for path in fetch_pairs(settings, pairs, mirror=args.mirror):
            print(f"  -> {path}")
    for name in args.fetch or []:
        if name.startswith("translate:"):
            continue
        spec = get_spec(name)
        print(f"fetching {name} from {spec.url} ...")
        print(f"  -> {fetch(spec, settings)}")
    if args.fetch and all(name.startswith("translate:") for name in args.fetch):
        return 0  # only translation models were asked for; the default set is not touched
    missing = prepare(settings)
    if missing:
        for spec in missing:
            print(f"missing: {spec.name}: {spec.how_to_get(settings)}", file=sys.stderr)
        return 3
    print(f"models ready in {settings.model_dir} (default set: all present)")
    return 0


def cmd_models_import(args: argparse.Namespace) -> int:
    from lens.translate.install import import_models

    installed = import_models(_settings(), args.source)
    for path in installed:
        print(f"installed {path}")
    return 0


def cmd_analyze(args: argparse.Namespace) -> int:
    from lens.image import load_image_file
    from lens.pipeline import AnalyzeOptions, Pipeline
    from lens.threads import apply_settings_policy

    settings = _settings()
    apply_settings_policy(settings)
    image = load_image_file(
        args.photo, max_bytes=settings.limits.max_upload_bytes, max_pixels=settings.limits.max_pixels
    )
    options = AnalyzeOptions(
        target_lang=args.lang,
        max_regions=args.max_regions,
        regions=not args.no_regions,
        text=not args.no_text,
    )
    pipeline = Pipeline(settings)
    result = pipeline.analyze(image, options)
    need_map = args.heatmap or args.saliency_out
    saliency_map = pipeline.saliency.map(image.rgb) if need_map else None
    if args.saliency_out:
        from lens.draw import write_saliency_png

        write_saliency_png(saliency_map, args.saliency_out)
    if args.out:
        from lens.draw import draw_result

        draw_result(image.rgb, result, args.out, heatmap=saliency_map if args.heatmap else None)
    if args.json:
        print(result.model_dump_json(indent=2))
    else:
        print(summarize(result))
        if args.out:
            print(f"annotated image: {args.out}")
    return 0


def summarize(result) -> str:
    lines = [f"{result.width}x{result.height}  id {result.image_id[:12]}"]
    lines.append(f"regions: {len(result.regions)}")
    for r in result.regions:
        box = ", ".join(f"{v:.0f}" for v in r.box)
        best = f"  best match: {r.matches[0].title} ({r.matches[0].score:.2f})" if r.matches else ""
        lines.append(f"  {r.id}. {r.kind:8} {r.label or '':14} score {r.score:.2f}  [{box}]{best}")
    lines.append(f"text blocks: {len(result.text_blocks)}")
    for b in result.text_blocks:
        trans = f" -> {b.translation}" if b.translation else ""
        lines.append(f"  {b.id}. [{b.language or '?'}] {b.text!r}{trans}")
    timing = ", ".join(f"{k} {v:.0f} ms" for k, v in result.timings_ms.items())
    lines.append(f"timings: {timing}")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lens", description="Self-hosted visual search.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("analyze", help="find regions and text in a photo")
    p.add_argument("photo", type=Path)
    p.add_argument("--json", action="store_true", help="print the AnalyzeResult as JSON")
    p.add_argument("--out", type=Path, help="write the photo with numbered regions drawn on it")
    p.add_argument("--heatmap", action="store_true", help="with --out: overlay the saliency map")
    p.add_argument("--saliency-out", type=Path, help="write the saliency map as 8-bit grayscale PNG")
    p.add_argument("--lang", help="target language for translations (default from config)")
    p.add_argument("--max-regions", type=int)
    p.add_argument("--no-text", action="store_true", help="skip OCR and translation")
    p.add_argument("--no-regions", action="store_true", help="skip detection and search")
    p.set_defaults(func=cmd_analyze)

    models = sub.add_parser("models", help="list or prepare models")
    msub = models.add_subparsers(dest="models_command", required=True)
    p = msub.add_parser("list", help="every model, where it is looked for, whether present")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_models_list)
    p = msub.add_parser("prepare", help="make the offline default set ready (idempotent)")
    p.add_argument("--fetch", action="append", metavar="NAME",
                   help="also download NAME (network); translate:fr-en or translate:all for Firefox translation models")
    p.add_argument("--mirror", metavar="URL", help="where translate:... models come from (default: translate.model_mirror)")
    p.set_defaults(func=cmd_models_prepare)
    p = msub.add_parser("import", help="install translation models from a folder or tarball (SHA256SUMS + <pair>/<files>)")
    p.add_argument("source", type=Path, metavar="DIR|TARBALL")
    p.set_defaults(func=cmd_models_import)

    adders = [importlib.import_module(name).add_commands for name in COMMAND_MODULES]
    adders += [entry.load() for entry in entry_points(group=COMMAND_ENTRY_POINTS)]
    for add_commands in adders:
        add_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (LensError, ConfigError) as exc:
        code = getattr(exc, "exit_code", 2)
        print(f"lens: error: {exc}", file=sys.stderr)
        return code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
