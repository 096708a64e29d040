"""``siglip-data build folder IN OUT``: captioned images -> shards that keep keys and file names."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

import siglip_data
from siglip_data._cli import main


def image(path: Path, value: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), (value, 0, 0)).save(path)


def test_a_jsonl_folder_becomes_shards_keeping_keys_file_names_and_metadata(tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    lines = []
    for index, name in enumerate(["cats/001.png", "cats/my cat.2.png", "dog.png"]):
        image(folder / name, index * 50)
        lines.append(json.dumps({"file": name, "caption": f"caption  {index}", "label": index}))
    (folder / "captions.jsonl").write_text("\n".join(lines) + "\n")
    assert main(["build", "folder", str(folder), str(tmp_path / "shards")]) == 0
    samples = [
        s
        for shard in siglip_data.resolve_shards(tmp_path / "shards")
        for s in siglip_data.read_shard(shard)
    ]
    assert [s.key for s in samples] == ["cats__001", "cats__my_cat_2", "dog"]
    assert [s.metadata for s in samples] == [
        {"file": "cats/001.png", "label": 0},
        {"file": "cats/my cat.2.png", "label": 1},
        {"file": "dog.png", "label": 2},
    ]
    assert samples[1].image == (folder / "cats/my cat.2.png").read_bytes()  # bytes unchanged
    assert (tmp_path / "shards" / "captions.txt").read_text().splitlines() == [
        "caption 0",
        "caption 1",
        "caption 2",
    ]


def test_one_txt_per_image_works_and_a_missing_caption_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "photos"
    for index in range(3):
        image(folder / f"{index}.jpg", index)
        (folder / f"{index}.txt").write_text(f"photo {index}\n")
    assert main(["build", "folder", str(folder), str(tmp_path / "a")]) == 0
    summary = json.loads((tmp_path / "a" / "folder.json").read_text())
    assert (summary["layout"], summary["num_samples"]) == ("txt", 3)
    (folder / "1.txt").unlink()
    assert main(["build", "folder", str(folder), str(tmp_path / "b")]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1
    assert "1 of 3 images have no caption file" in error
    assert "1.txt" in error


def test_two_caption_layouts_in_one_folder_ask_which(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "photos"
    image(folder / "a.png", 0)
    (folder / "a.txt").write_text("from the txt")
    (folder / "captions.jsonl").write_text(json.dumps({"file": "a.png", "caption": "from jsonl"}))
    assert main(["build", "folder", str(folder), str(tmp_path / "out")]) == 2
    assert "--captions captions.jsonl or --captions txt" in capsys.readouterr().err
    arguments = ["build", "folder", str(folder), str(tmp_path / "out"), "--captions", "txt"]
    assert main(arguments) == 0
    assert (tmp_path / "out" / "captions.txt").read_text() == "from the txt\n"


def test_cli_errors_are_one_line_and_debug_raises(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["count", str(tmp_path / "missing-{0..1}.tar")]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    with pytest.raises(siglip_data.UnreadableShardError):
        main(["count", str(tmp_path / "missing.tar"), "--debug"])
