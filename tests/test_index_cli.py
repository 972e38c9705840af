"""`lens index ...` and `lens demo-catalog` end to end, in-process, on real stamps."""

from __future__ import annotations

import json
import shutil

import pytest

from lens.cli import main
from lens.index.demo import tux_stamps


@pytest.fixture
def folder(tmp_path):
    stamps = tux_stamps()
    if not stamps:
        pytest.skip("Debian tuxpaint-stamps-default is not installed")
    root = tmp_path / "shop"
    (root / "sub").mkdir(parents=True)
    for i, stamp in enumerate(stamps[::40][:6]):
        shutil.copy(stamp.path, root / ("sub" if i % 2 else "") / f"item{i}.png")
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff" + b"\0" * 50)
    (root / "notes.txt").write_text("not an image")
    return root


def test_index_add_stats_search_remove(lens_env, folder, capsys, monkeypatch):
    monkeypatch.setenv("LENS_EMBED__BACKEND", "mobilenetv2")
    from lens.config import get_settings

    get_settings.cache_clear()
    meta = folder / "items.jsonl"
    meta.write_text(
        json.dumps({"file": "item0.png", "title": "First thing", "url": "https://x.example/1", "price": 3}) + "\n"
        + json.dumps({"file": "sub/item1.png", "title": "Second", "external_id": "sku-2"}) + "\n"
    )
    assert main(["index", "add", str(folder), "--meta", str(meta)]) == 0
    out = capsys.readouterr().out
    assert "added 6, already present 0, skipped 1" in out and "broken.jpg" in out

    assert main(["index", "add", str(folder)]) == 0
    assert "added 0, already present 6, skipped 1" in capsys.readouterr().out

    assert main(["index", "stats", "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["items"] == 6 and stats["embedder"] == "mobilenetv2"

    assert main(["index", "search", str(folder / "item0.png"), "-k", "2", "--json"]) == 0
    matches = json.loads(capsys.readouterr().out)
    assert matches[0]["title"] == "First thing" and matches[0]["metadata"] == {"price": 3}
    assert matches[0]["url"] == "https://x.example/1"

    assert main(["index", "remove", str(matches[0]["item_id"]), "12345"]) == 2
    assert "removed 1 item(s); not found: 12345" in capsys.readouterr().out


def test_index_commands_without_a_catalog_say_how_to_build_one(lens_env, capsys):
    assert main(["index", "stats"]) == 2
    assert "lens demo-catalog" in capsys.readouterr().err


def test_index_add_bad_meta_is_a_clear_error(lens_env, folder, capsys):
    bad = folder / "items.csv"
    bad.write_text("title,url\nx,y\n")
    assert main(["index", "add", str(folder), "--meta", str(bad)]) == 2
    assert "no 'file' column" in capsys.readouterr().err


def test_remove_demo_keeps_your_items_and_clear_empties_the_catalog(lens_env, folder, capsys, monkeypatch):
    """The real `lens demo-catalog` on a few of its stamps (all 421 take minutes), then the
    operator's own items, then `index remove --demo` and `index clear`."""
    monkeypatch.setenv("LENS_EMBED__BACKEND", "mobilenetv2")
    from lens.config import get_settings
    from lens.index import demo

    get_settings.cache_clear()
    few = tux_stamps()[5::90][:4]
    monkeypatch.setattr(demo, "tux_stamps", lambda: few)
    assert main(["demo-catalog"]) == 0
    assert "added 4," in capsys.readouterr().out
    (folder / "broken.jpg").unlink()
    assert main(["index", "add", str(folder)]) == 0
    assert "catalog now holds 10 items" in capsys.readouterr().out

    assert main(["index", "remove"]) == 2
    assert "--demo" in capsys.readouterr().err
    assert main(["index", "remove", "--demo"]) == 0
    assert "removed 4 item(s); catalog now holds 6 items" in capsys.readouterr().out
    assert main(["index", "search", str(folder / "item0.png"), "-k", "10", "--json"]) == 0
    titles = {m["title"] for m in json.loads(capsys.readouterr().out)}
    assert titles == {f"item{i}" for i in range(6)}, "only your items are left"
    assert main(["index", "remove", "--demo"]) == 0
    assert "removed 0 item(s)" in capsys.readouterr().out

    assert main(["index", "clear"]) == 2
    assert "all 6 items" in capsys.readouterr().err and main(["index", "stats", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["items"] == 6, "nothing removed without --yes"
    assert main(["index", "clear", "--yes"]) == 0
    assert "removed 6 item(s)" in capsys.readouterr().out
    assert main(["index", "stats", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["items"] == 0


def test_index_add_joins_rows_sharing_an_external_id_into_one_item(lens_env, folder, capsys, monkeypatch):
    monkeypatch.setenv("LENS_EMBED__BACKEND", "mobilenetv2")
    from lens.config import get_settings

    get_settings.cache_clear()
    meta = folder / "items.csv"
    meta.write_text("file,title,external_id\nitem0.png,Kettle,sku-1\nitem2.png,Kettle (side),sku-1\n")
    assert main(["index", "add", str(folder), "--meta", str(meta)]) == 0
    assert "catalog now holds 5 items (6 images)" in capsys.readouterr().out
    assert main(["index", "search", str(folder / "item2.png"), "-k", "5", "--json"]) == 0
    matches = json.loads(capsys.readouterr().out)
    assert matches[0]["title"] == "Kettle" and matches[0]["score"] > 0.99
    assert [m["external_id"] for m in matches].count("sku-1") == 1
