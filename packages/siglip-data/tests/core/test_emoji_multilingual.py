"""``build_emoji_multilingual``: CLDR names in many languages, XM3600 layout, the English split."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

import siglip_data
from siglip_data import _builders
from siglip_data._builders import emoji_split
from siglip_data._builders import read_emoji_test
from siglip_data._cli import main
from siglip_data._emoji_multilingual import read_cldr_annotations
from siglip_data.builders import XM3600_LANGUAGES

needs_cldr = pytest.mark.debian_data("emoji-multilingual")
LANGUAGES = ["en", "de", "el", "ja"]


def read_layout(split_dir: Path) -> list[dict]:
    lines = (split_dir / "captions.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]


@needs_cldr
def test_build_writes_the_xm3600_layout_with_cldr_names_in_every_language(tmp_path: Path) -> None:
    info = siglip_data.builders.build_emoji_multilingual(
        tmp_path, languages=LANGUAGES, limit=40, image_size=48
    )
    assert info.languages == tuple(LANGUAGES)
    assert info.missing_languages == ()
    entries = read_emoji_test()
    names = {language: read_cldr_annotations(language).names for language in LANGUAGES}
    assert json.loads((tmp_path / "multilingual.json").read_text(encoding="utf-8")) == json.loads(
        info.to_json()
    )
    total = 0
    for split in ("train", "heldout"):
        records = read_layout(tmp_path / split)
        assert len(records) == info.images[split]
        total += len(records)
        files = sorted(p.name for p in (tmp_path / split / "images").iterdir())
        assert files == sorted(f"{r['image/key']}.jpg" for r in records)
        for record in records:
            entry = entries[int(record["image/key"].removeprefix("emoji"))]
            assert emoji_split(entry.base_name) == split  # the English builder's split
            assert record["image/locale"] == "und"
            assert set(record) == {"image/key", "image/locale", *LANGUAGES}
            # CLDR 41's English names are emoji-test.txt's names.
            assert record["en"]["caption"][0] == entry.name
            for language in LANGUAGES:
                captions = record[language]["caption"]
                assert 1 <= len(captions) <= 2
                assert captions[0] == names[language][entry.emoji.replace("\ufe0f", "")]
                assert all(isinstance(text, str) and text.strip() for text in captions)
            with Image.open(tmp_path / split / "images" / f"{record['image/key']}.jpg") as image:
                assert (image.format, image.mode, image.size) == ("JPEG", "RGB", (48, 48))
        for language in LANGUAGES:
            assert info.captions[split][language] == sum(
                len(r[language]["caption"]) for r in records
            )
    assert total + max(info.dropped.values()) == 40
    assert sum(info.images.values()) == total


@needs_cldr
def test_same_keys_and_split_as_the_english_emoji_builder(tmp_path: Path) -> None:
    english = siglip_data.builders.build_emoji(tmp_path / "en", limit=40, image_size=32)
    multilingual = siglip_data.builders.build_emoji_multilingual(
        tmp_path / "ml", languages=["en", "fr"], limit=40, image_size=32
    )
    for split in ("train", "heldout"):
        shard_keys = {
            sample.key
            for shard in english.splits[split].shards
            for sample in siglip_data.read_shard(shard)
        }
        layout_keys = {r["image/key"] for r in read_layout(tmp_path / "ml" / split)}
        assert layout_keys == shard_keys
        assert multilingual.images[split] == len(shard_keys)


@needs_cldr
def test_default_languages_are_xm3600_minus_what_cldr_lacks_and_gaps_are_dropped(
    tmp_path: Path,
) -> None:
    info = siglip_data.builders.build_emoji_multilingual(tmp_path, limit=60, image_size=16)
    assert info.missing_languages == ("quz",)
    assert info.languages == tuple(code for code in XM3600_LANGUAGES if code != "quz")
    assert len(info.languages) == 35
    # Maori names fewer emoji than the others: those emoji are left out for every language.
    assert info.dropped["mi"] > info.dropped["en"]
    kept = {r["image/key"] for split in ("train", "heldout") for r in read_layout(tmp_path / split)}
    assert len(kept) == 60 - max(info.dropped.values())
    # A smaller rebuild replaces each split folder: no image of the earlier build is left.
    siglip_data.builders.build_emoji_multilingual(
        tmp_path, languages=["en"], limit=5, image_size=16
    )
    for split in ("train", "heldout"):
        keys = {r["image/key"] for r in read_layout(tmp_path / split)}
        assert {p.stem for p in (tmp_path / split / "images").iterdir()} == keys


@needs_cldr
def test_bad_languages_and_limits_are_clear_errors(tmp_path: Path) -> None:
    build = siglip_data.builders.build_emoji_multilingual
    with pytest.raises(ValueError, match=r"no CLDR emoji annotations for 'quz'.*CLDR has qu"):
        build(tmp_path, languages=["en", "quz"], limit=5)
    with pytest.raises(ValueError, match="expected at least one language"):
        build(tmp_path, languages=[], limit=5)
    with pytest.raises(ValueError, match="expected unique codes, got 'de' twice"):
        build(tmp_path, languages=["de", "en", "de"], limit=5)
    with pytest.raises(TypeError, match="expected a sequence of codes"):
        build(tmp_path, languages="de", limit=5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="limit must be >= 1"):
        build(tmp_path, languages=["de"], limit=0)
    assert not (tmp_path / "train").exists()


def test_missing_cldr_package_names_the_install_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(_builders, "CLDR_DIR", tmp_path / "absent")
    with pytest.raises(siglip_data.builders.MissingDebianPackageError) as caught:
        siglip_data.builders.build_emoji_multilingual(tmp_path / "out")
    assert "unicode-cldr-core" in caught.value.packages
    assert caught.value.command.startswith("apt install -y ")
    assert str(caught.value).endswith(caught.value.command)
    assert not (tmp_path / "out").exists()  # checked before any work
    assert main(["build", "emoji-multilingual", str(tmp_path / "out")]) == 2
    assert "unicode-cldr-core" in capsys.readouterr().err


@needs_cldr
def test_cli_builds_with_a_language_list(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "cli"
    assert (
        main(["build", "emoji-multilingual", str(out), "--limit", "12", "--languages", "en,de"])
        == 0
    )
    printed = capsys.readouterr().out
    assert "2 languages: en de" in printed
    assert "train:" in printed
    assert (out / "train" / "captions.jsonl").is_file()
    assert main(["build", "emoji-multilingual", str(out), "--languages", "en,xx"]) == 2
    assert "no CLDR emoji annotations for 'xx'" in capsys.readouterr().err
