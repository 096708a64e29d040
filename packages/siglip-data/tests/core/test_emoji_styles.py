"""Emoji styles (issue 19): one name-level split for every style, licences recorded, flags and
keycaps held out like the other groups, and clear errors naming the install command."""

from __future__ import annotations

import collections
import os
from pathlib import Path

import numpy as np
import pytest

from siglip_data import read_shard
from siglip_data.builders import EMOJI_STYLES
from siglip_data.builders import MissingNpmPackageError
from siglip_data.builders import build_emoji_style
from siglip_data.builders import default_npm_cache
from siglip_data.builders import emoji_flippable
from siglip_data.builders import emoji_split_key
from siglip_data.builders import emoji_style_split
from siglip_data.builders import npm_tarball

TWEMOJI = EMOJI_STYLES["twemoji"].npm_package


def _require_npm(package: str) -> None:
    """Skip naming the ``npm pack`` command; fail instead under SIGLIP_REQUIRE_DATA=1 (CI)."""
    try:
        npm_tarball(package)
    except MissingNpmPackageError as error:
        if os.environ.get("SIGLIP_REQUIRE_DATA") == "1":
            raise
        pytest.skip(f"not cached ({error.command}); SIGLIP_REQUIRE_DATA=1 makes this a failure")


def _names(directory: Path, split: str) -> list[str]:
    return [
        sample.caption
        for shard in sorted((directory / split).glob("shard-*.tar"))
        for sample in read_shard(str(shard))
    ]


def test_flags_and_keycaps_split_by_full_name_variants_by_base_name() -> None:
    assert emoji_split_key("flag: Japan") == "flag: Japan"
    assert emoji_split_key("keycap: 7") == "keycap: 7"
    assert emoji_split_key("kiss: woman, man, dark skin tone") == "kiss"
    assert emoji_style_split("thumbs up: dark skin tone") == emoji_style_split("thumbs up")


def test_flips_are_refused_where_a_mirror_changes_the_meaning() -> None:
    assert emoji_flippable("dog face", "animal-mammal")
    assert not emoji_flippable("flag: Japan", "country-flag")
    assert not emoji_flippable("backhand index pointing left", "hand-single-finger")
    assert not emoji_flippable("keycap: 7", "keycap")


@pytest.mark.debian_data("emoji-names")
def test_every_group_has_a_meaningful_heldout_share() -> None:
    from siglip_data._builders import read_emoji_test

    counts: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for entry in read_emoji_test():
        counts[entry.group][emoji_style_split(entry.name)] += 1
        if entry.base_name in ("flag", "keycap"):
            counts[entry.base_name][emoji_style_split(entry.name)] += 1
    for group, split in counts.items():
        share = split["heldout"] / (split["heldout"] + split["train"])
        assert 0.1 <= share <= 0.45, f"{group}: {dict(split)}"
    assert counts["keycap"]["heldout"] >= 2
    assert counts["flag"]["heldout"] >= 40


@pytest.mark.debian_data("emoji", "emoji-symbola")
def test_noto_and_symbola_share_one_split_and_record_their_licence(tmp_path: Path) -> None:
    infos = {
        style: build_emoji_style(tmp_path / style, style=style, image_size=24, limit=120)
        for style in ("noto", "symbola")
    }
    for style, info in infos.items():
        assert info.license == EMOJI_STYLES[style].license
        assert info.license in (tmp_path / style / "dataset.json").read_text()
    for split in ("train", "heldout"):
        noto, symbola = (set(_names(tmp_path / s, split)) for s in ("noto", "symbola"))
        assert symbola <= noto  # Symbola draws a subset (no sequences), on the same side
        assert noto
    sample = next(read_shard(infos["symbola"].splits["train"].shards[0]))
    assert sample.metadata["style"] == "symbola"
    assert sample.metadata["split_key"] == emoji_split_key(sample.caption)


@pytest.mark.debian_data("emoji-names")
def test_a_missing_npm_tarball_names_the_npm_pack_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SIGLIP_NPM_CACHE", str(tmp_path / "npm"))
    assert default_npm_cache() == tmp_path / "npm"
    with pytest.raises(MissingNpmPackageError) as caught:
        build_emoji_style(tmp_path / "out", style="twemoji")
    command = f"npm pack {TWEMOJI} --pack-destination {tmp_path / 'npm'}"
    assert caught.value.command == command
    assert str(caught.value).endswith(command)
    assert not (tmp_path / "out").exists()


@pytest.mark.debian_data("emoji")
def test_twemoji_draws_the_same_names_as_noto_on_the_same_side(tmp_path: Path) -> None:
    _require_npm(TWEMOJI)
    twemoji = build_emoji_style(tmp_path / "twemoji", style="twemoji", image_size=16, limit=40)
    build_emoji_style(tmp_path / "noto", style="noto", image_size=16, limit=40)
    assert "CC-BY-4.0" in twemoji.license
    for split in ("train", "heldout"):
        assert _names(tmp_path / "twemoji", split) == _names(tmp_path / "noto", split)
    first = next(read_shard(twemoji.splits["train"].shards[0]))
    assert first.image is not None
    import io

    from PIL import Image

    pixels = np.asarray(Image.open(io.BytesIO(first.image)))
    assert pixels.shape == (16, 16, 4)
    assert pixels[..., 3].max() == 255
    assert pixels[..., 3].min() == 0
