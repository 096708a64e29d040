"""``siglip-eval multilingual --root DIR --model ...`` end to end: a checkpoint on disk, a
SentencePiece model trained here, an XM3600-layout folder; the table, JSON and bar chart."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from siglip_data import SentencePieceTokenizer
from siglip_data import train_sentencepiece
from siglip_eval import multilingual_retrieval_metrics
from siglip_eval._cli import main
from siglip_eval.datasets import xm3600
from siglip_eval.torch import torch_encoder
from siglip_models import get_config
from siglip_models.torch import SiglipModel

CAPTIONS = [
    {"en": ["a red square", "red"], "de": ["ein ROTES Quadrat"], "el": ["ΚΟΚΚΙΝΟ τετράγωνο"]},
    {"en": ["a blue square"], "de": ["ein BLAUES Quadrat", "blau"], "el": ["ΜΠΛΕ τετράγωνο"]},
    {"en": ["a green square"], "de": ["GRÜN"], "el": ["ΠΡΑΣΙΝΟ", "πράσινο τετράγωνο"]},
]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """A random tiny-test checkpoint, a 40-piece tokenizer and a 3-image XM3600 folder."""
    directory = tmp_path_factory.mktemp("multilingual")
    torch.manual_seed(0)
    SiglipModel(get_config("tiny-test")).save_pretrained(directory / "checkpoint")
    texts = [text for record in CAPTIONS for captions in record.values() for text in captions]
    train_sentencepiece(texts * 20, directory / "spiece.model", vocab_size=40)
    root = directory / "xm3600"
    (root / "images").mkdir(parents=True)
    lines = []
    for index, (record, rgb) in enumerate(
        zip(CAPTIONS, [(220, 20, 20), (20, 20, 220), (20, 220, 20)])
    ):
        key = f"{index:016x}"
        Image.new("RGB", (20, 16), rgb).save(root / "images" / f"{key}.jpg")
        languages = {lang: {"caption": texts} for lang, texts in record.items()}
        lines.append(json.dumps({"image/key": key, "image/locale": "en", **languages}))
    (root / "captions.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return directory / "checkpoint", directory / "spiece.model", root


@pytest.mark.parametrize("lowercase", ["unicode", "ascii"])
def test_multilingual_command_writes_table_json_and_bar_chart(
    checkpoint: tuple[Path, Path, Path], tmp_path: Path, lowercase: str
) -> None:
    model_dir, spiece, root = checkpoint
    out = tmp_path / "report"
    arguments = ["multilingual", "--model", str(model_dir), "--tokenizer", str(spiece)]
    arguments += ["--root", str(root), "--out", str(out), "--no-progress", "--ks", "1,2"]
    assert main([*arguments, "--lowercase", lowercase]) == 0
    record = json.loads((out / "results.json").read_text())
    assert record["languages"] == ["de", "el", "en"]
    assert record["context"]["lowercase"] == lowercase
    assert record["num_texts"]["big_vision"] == {"de": 4, "el": 4, "en": 4}
    assert record["num_texts"]["clip_benchmark"] == {"de": 3, "el": 3, "en": 3}
    assert set(record["metrics"]) == {"big_vision", "clip_benchmark"}
    assert (out / "per_language.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| el | 4 |" in (out / "summary.md").read_text()

    # The same numbers from the model, the tokenizer and the metric function directly.
    config = get_config("tiny-test")
    model = SiglipModel.from_pretrained(model_dir)
    tokenizer = SentencePieceTokenizer(spiece, length=config.text.max_length, lowercase=lowercase)  # type: ignore[arg-type]
    encoder = torch_encoder(model, tokenizer)
    dataset = xm3600(root, image_size=config.vision.image_size)
    (batch,) = list(dataset.batches(8))
    texts, text_to_image, languages = dataset.texts()
    expected = multilingual_retrieval_metrics(
        encoder.encode_images(batch.pixels),
        encoder.encode_texts(texts),
        text_to_image,
        languages,
        ks=(1, 2),
    )
    for language in ("de", "el", "en", "mean"):
        for key, value in expected[language].items():
            assert record["metrics"]["big_vision"][language][key] == pytest.approx(value)


def test_bad_command_lines_exit_2_with_a_message(
    checkpoint: tuple[Path, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model_dir, spiece, root = checkpoint
    base = ["multilingual", "--model", str(model_dir), "--tokenizer", str(spiece)]
    assert main([*base, "--root", str(root), "--languages", "en,quz", "--out", str(tmp_path)]) == 2
    assert "'quz' have no captions" in capsys.readouterr().err
    assert main([*base, "--root", str(tmp_path / "absent"), "--out", str(tmp_path)]) == 2
    assert "no captions.jsonl" in capsys.readouterr().err
    assert main([*base, "--root", str(root), "--ks", "1,x", "--out", str(tmp_path)]) == 2
    assert "--ks" in capsys.readouterr().err
