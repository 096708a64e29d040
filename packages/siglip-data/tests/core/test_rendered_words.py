"""The rendered-words dataset: text at its natural aspect ratio, caption = text, unseen held-out words."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

import siglip_data
from siglip_data._cli import main
from siglip_data._rendered_words import word_split
from siglip_data.builders import build_rendered_words
from siglip_data.builders import load_dataset_info


@pytest.mark.debian_data("rendered-words")
def test_rendered_words_keep_their_aspect_and_hold_out_unseen_words(tmp_path: Path) -> None:
    info = build_rendered_words(tmp_path, limit=60, samples_per_shard=25, image_size=24)
    assert load_dataset_info(tmp_path) == info
    assert info.splits["train"].num_samples == info.splits["heldout"].num_samples == 60
    words: dict[str, set[str]] = {}
    for split in ("train", "heldout"):
        samples = [s for shard in info.splits[split].shards for s in siglip_data.read_shard(shard)]
        widths = []
        for sample in samples:
            image = Image.open(io.BytesIO(sample.image))
            assert image.height == 24
            widths.append(image.width)
            assert sample.caption == sample.metadata["text"]
            assert sample.metadata["split"] == split
            for word in sample.caption.split():
                assert word_split(word) == split
                words.setdefault(split, set()).add(word)
        assert min(widths) > 24  # every word is wider than high: a squash would distort it
        assert any(sample.metadata["words"] == 2 for sample in samples)
    assert not words["train"] & words["heldout"]


@pytest.mark.debian_data("rendered-words")
def test_rendered_words_build_is_reproducible_from_the_command_line(tmp_path: Path) -> None:
    assert main(["build", "rendered-words", str(tmp_path / "a"), "--limit", "5"]) == 0
    again = build_rendered_words(tmp_path / "b", limit=5)
    first = load_dataset_info(tmp_path / "a").splits["heldout"].shards[0]
    second = again.splits["heldout"].shards[0]
    assert [s.caption for s in siglip_data.read_shard(first)] == [
        s.caption for s in siglip_data.read_shard(second)
    ]


def test_missing_word_list_names_the_apt_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from siglip_data import _builders

    monkeypatch.setattr(_builders, "WORD_LIST", tmp_path / "absent-words")
    with pytest.raises(siglip_data.builders.MissingDebianPackageError) as caught:
        build_rendered_words(tmp_path / "out")
    assert caught.value.command == "apt install -y wamerican fonts-dejavu-core"
    assert not (tmp_path / "out").exists()
