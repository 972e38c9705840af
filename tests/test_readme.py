"""The README's commands, run: every `lens` command it shows exists with the options it shows
(`--help`), the safe ones run for real in a temporary data dir (models list, the "your own
catalog" walk-through on real images with the README's own example items.csv, remove --demo,
clear), every `make` target it names exists, its settings examples load, its links resolve."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import tomllib
from pathlib import Path

import pytest

from lens.cli import main

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text(encoding="utf-8")


def code_blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README, flags=re.S)


def shell_commands() -> list[str]:
    """Commands of the ```sh blocks (comments dropped) and of inline code that starts like one."""
    commands = []
    for block in code_blocks("sh"):
        for line in block.splitlines():
            line = line.split("  #", 1)[0].strip()
            if line and not line.startswith("#"):
                commands.append(line)
    for span in re.findall(r"`([^`\n]+)`", README):
        if re.match(r"(\.venv/bin/)?lens \w|make \w|(LENS_\w+=\S+ )+make ", span):
            commands.append(span)
    return commands


def lens_commands() -> list[list[str]]:
    """Each `lens ...` command as argv (without `lens`); alternatives written `a` / `b` or
    `a, b` in a table cell are split, placeholders kept as they are."""
    out = []
    for command in shell_commands():
        command = re.sub(r"^\.venv/bin/", "", command)
        if not command.startswith("lens "):
            continue
        for part in re.split(r"\s+/\s+|,\s+", command):
            words = shlex.split(part.replace("…", "").replace("[", " ").replace("]", " "))
            if words and words[0] == "lens":
                words = words[1:]
            if words:
                out.append(words)
    return out


def subcommand_of(words: list[str]) -> list[str]:
    """The leading words naming a (sub)command: `index remove`, `models`, `serve`, ..."""
    known = {"analyze", "models", "list", "prepare", "index", "add", "remove", "clear", "stats", "search", "tune",
             "demo-catalog", "serve", "saliency"}
    chosen = []
    for word in words:
        if word not in known:
            break
        chosen.append(word)
    return chosen


def help_text(capsys, argv: list[str]) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--help"])
    assert exit_info.value.code == 0, argv
    return capsys.readouterr().out


def test_the_readme_shows_commands_at_all():
    assert len(lens_commands()) >= 10
    assert any(c[:2] == ["index", "remove"] and "--demo" in c for c in lens_commands())
    assert any(c[:2] == ["index", "clear"] and "--yes" in c for c in lens_commands())


def test_every_lens_command_in_the_readme_exists_with_the_options_it_shows(capsys):
    for words in lens_commands():
        sub = subcommand_of(words)
        assert sub, f"not a lens command: {words}"
        text = help_text(capsys, sub)
        for option in (w.split("=")[0] for w in words if w.startswith("--")):
            assert option in text, f"`lens {' '.join(sub)}` has no {option} (README: {words})"


def test_every_make_target_in_the_readme_exists():
    makefile = (REPO / "Makefile").read_text()
    targets = set(re.findall(r"^([a-z][\w-]*):", makefile, flags=re.M))
    named = {m for c in shell_commands() for m in re.findall(r"(?:^|\s)make ([a-z][\w-]*)", c)}
    assert {"run", "test", "up", "down", "bench", "schema"} <= named
    assert named <= targets, named - targets


def test_the_settings_examples_load(tmp_path, monkeypatch):
    from lens.config import get_settings, load_settings

    for key in [k for k in __import__("os").environ if k.startswith("LENS_")]:
        monkeypatch.delenv(key)
    (toml_text,) = code_blocks("toml")
    tomllib.loads(toml_text)
    config = tmp_path / "lens.toml"
    config.write_text(toml_text)
    monkeypatch.setenv("LENS_CONFIG", str(config))
    get_settings.cache_clear()
    settings = load_settings()
    assert settings.detect.backend == "openvino-ssd" and settings.saliency.backend == "spectral-residual"
    monkeypatch.delenv("LENS_CONFIG")
    # `LENS_X__Y=v make run`: each variable is a real setting with an allowed value.
    for command in shell_commands():
        assignments = re.findall(r"\b(LENS_\w+)=(\S+)", command)
        for name, value in assignments:
            monkeypatch.setenv(name, value)
        if assignments:
            settings = load_settings()
            for name, value in assignments:
                section, field = name.removeprefix("LENS_").lower().split("__")
                assert getattr(getattr(settings, section), field) == value
            for name, _ in assignments:
                monkeypatch.delenv(name)
    get_settings.cache_clear()


def test_the_defaults_the_readme_states_are_the_defaults():
    from lens.config import Settings

    defaults = Settings()
    row = {m[0].strip(): m[1] for m in re.findall(r"^\| ([^|]+) \| `([^`]+)`", README, flags=re.M)}
    assert row["object detection"] == defaults.detect.backend == "openvino-ssd"
    assert row["saliency (what stands out)"] == defaults.saliency.backend == "spectral-residual"
    assert row["embedding for catalog search"] == defaults.embed.backend == "efficientnet-lite2-onnx"
    assert row["text reading (OCR)"] == defaults.ocr.backend
    assert row["translation"] == defaults.translate.backend
    assert "YOLOv3-tiny via ultralytics" not in README


def test_links_resolve_inside_the_repository():
    links = re.findall(r"\]\(([^)]+)\)", README)
    assert "docs/deploy.md" in links
    for link in links:
        if "://" in link:
            continue
        target = (REPO / link.split("#")[0]).resolve()
        assert target.is_relative_to(REPO), f"{link} points outside the repository"
        assert target.exists(), link
    assert "../shared" not in README


def test_the_catalog_walk_through_runs_as_written(lens_env, tux_stamps, capsys, monkeypatch):
    """The README's "your own catalog" commands, with its example items.csv and JSONL line, on
    real photo stamps standing in for the products."""
    monkeypatch.setenv("LENS_EMBED__BACKEND", "mobilenetv2")  # the fastest embedder; same commands
    from lens.config import get_settings
    from lens.index import demo
    from lens.index.cli import read_meta

    get_settings.cache_clear()
    assert main(["models", "list"]) == 0
    listed = capsys.readouterr().out
    assert "ssd-mobilenet-v2-coco" in listed and "efficientnet-lite2" in listed
    assert main(["index", "stats"]) == 2  # no catalog yet: says how to build one
    assert "lens index add" in capsys.readouterr().err

    # The demo catalog, on a few of its stamps (all 420 take minutes).
    monkeypatch.setattr(demo, "tux_stamps", lambda: tux_stamps[::150][:3])
    assert main(["demo-catalog", "--if-empty"]) == 0
    capsys.readouterr()

    (csv_text,) = code_blocks("csv")
    shop = lens_env / "my-products"
    rows = [line.split(",")[0] for line in csv_text.strip().splitlines()[1:]]
    for name, stamp in zip(rows, tux_stamps[7::97], strict=False):
        (shop / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(stamp.path, shop / name)  # a PNG under a .jpg name: read by its content
    (shop / "items.csv").write_text(csv_text)
    jsonl = re.search(r"The same as JSONL: `([^`]+)`", README).group(1)
    (shop / "items.jsonl").write_text(jsonl + "\n")
    assert read_meta(shop / "items.jsonl")["mugs/blue.jpg"] == json.loads(jsonl)

    walk = [c for c in lens_commands() if c[:1] == ["index"] and c[1] in ("remove", "add", "stats")
            and ("--demo" in c or "./my-products" in c or c[1] == "stats")]
    assert [c[1] for c in walk[:3]] == ["remove", "add", "stats"], walk
    with monkeypatch.context() as m:
        m.chdir(lens_env)
        for argv in walk[:3]:
            assert main(argv) == 0, argv
    out = capsys.readouterr().out
    assert "removed 3 item(s)" in out and "catalog now holds 3 items" in out

    assert main(["index", "search", str(shop / "lamp.png"), "--json"]) == 0
    matches = json.loads(capsys.readouterr().out)
    assert matches[0]["title"] == "Desk lamp" and matches[0]["url"] == "https://shop.example/p/lamp"
    assert matches[0]["external_id"] == "SKU-2001" and matches[0]["metadata"] == {"price": "39.00"}

    assert main(["index", "clear"]) == 2
    capsys.readouterr()
    assert main(["index", "clear", "--yes"]) == 0
    assert "removed 3 item(s)" in capsys.readouterr().out
    assert main(["index", "stats", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["items"] == 0
