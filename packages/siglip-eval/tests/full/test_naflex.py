"""NaFlex checkpoints in evaluation: zero-shot and retrieval at native aspect ratio (torch, HF)."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import transformers

import siglip_data
import siglip_models.torch
from siglip_data.naflex import collate_naflex
from siglip_data.naflex import naflex_preprocess
from siglip_eval import evaluate_retrieval
from siglip_eval import evaluate_zeroshot
from siglip_eval._cli import main
from siglip_eval._templates import ONE_TEMPLATE
from siglip_eval.datasets import classification_shards
from siglip_eval.datasets import retrieval_shards
from siglip_eval.torch import from_pretrained
from siglip_eval.torch import torch_encoder
from siglip_eval.torch import transformers_encoder

COLORS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (20, 40, 230)}


@pytest.fixture(scope="module")
def naflex_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("naflex-model")
    torch.manual_seed(0)
    siglip_models.torch.SiglipModel("tiny-test-naflex").save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """Wide, tall and square solid-colour images labelled by colour, captioned by it."""
    rng = np.random.default_rng(0)
    samples = []
    for index in range(9):
        name = list(COLORS)[index % 3]
        height, width = [(8, 60), (60, 8), (24, 24)][index // 3]
        image = np.clip(np.asarray(COLORS[name]) + rng.normal(0, 8, (height, width, 3)), 0, 255)
        samples.append((image.astype(np.uint8), f"a {name} thing", {"label": index % 3}))
    return siglip_data.write_shards(samples, tmp_path_factory.mktemp("shards"), samples_per_shard=4)


def tokenize(texts: list[str]) -> np.ndarray:
    ids = np.zeros((len(texts), 16), np.int32)  # SigLIP 2 pads with 0
    for row, text in enumerate(texts):
        codes = [3 + ord(ch) % 90 for ch in text[:15]]
        ids[row, : len(codes) + 1] = [*codes, 1]
    return ids


def test_zeroshot_and_retrieval_run_at_native_aspect_ratio(
    naflex_checkpoint: Path, shards: list[str]
) -> None:
    encoder, model = from_pretrained(naflex_checkpoint, tokenize)
    preprocess = functools.partial(naflex_preprocess, patch_size=4, max_num_patches=20)
    names = list(COLORS)
    dataset = classification_shards(
        shards, class_names=names, image_size=0, preprocess=preprocess, name="colors"
    )
    batch = next(dataset.batches(9))
    # The wide images keep their shape: 2 x 10 patches of 4 (8 x 60 -> 8 x 40), not squares.
    assert batch.pixels.spatial_shapes[0].tolist() == [2, 10]
    assert batch.pixels.spatial_shapes[3].tolist() == [10, 2]
    with torch.no_grad():
        expected = model.encode_image_naflex(
            torch.from_numpy(batch.pixels.patches),
            torch.from_numpy(batch.pixels.patch_mask),
            torch.from_numpy(batch.pixels.spatial_shapes),
        ).numpy()
    np.testing.assert_allclose(encoder.encode_images(batch.pixels), expected, atol=1e-6)
    zeroshot = evaluate_zeroshot(encoder, dataset, templates=ONE_TEMPLATE, progress=False)
    assert set(zeroshot.metrics) >= {"top1", "mean_per_class_recall"}
    retrieval = evaluate_retrieval(
        encoder,
        retrieval_shards(shards, image_size=0, preprocess=preprocess, name="colors"),
        progress=False,
    )
    assert 0.0 <= retrieval.metrics["image_to_text_R@1"] <= 1.0


def test_transformers_siglip2_adapter_gives_our_embeddings(naflex_checkpoint: Path) -> None:
    reference = transformers.Siglip2Model.from_pretrained(naflex_checkpoint).eval()
    ours, _ = from_pretrained(naflex_checkpoint, tokenize)
    theirs = transformers_encoder(
        reference, lambda texts, **_: {"input_ids": torch.from_numpy(tokenize(texts)).long()}
    )
    images = [np.full((12, 40, 3), 200, np.uint8), np.full((40, 4, 3), 30, np.uint8)]
    batch = collate_naflex([naflex_preprocess(i, patch_size=4, max_num_patches=12) for i in images])
    np.testing.assert_allclose(theirs.encode_images(batch), ours.encode_images(batch), atol=1e-5)
    np.testing.assert_allclose(
        theirs.encode_texts(["a red thing"]), ours.encode_texts(["a red thing"]), atol=1e-5
    )


def test_a_model_without_a_naflex_method_is_refused(naflex_checkpoint: Path) -> None:
    class Fixed(torch.nn.Module):
        def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
            return pixels.mean(dim=(2, 3))

        def encode_text(self, ids: torch.Tensor) -> torch.Tensor:
            return ids.float()

    batch = collate_naflex([naflex_preprocess(np.zeros((8, 8, 3), np.uint8), patch_size=4)])
    with pytest.raises(TypeError, match="needs a model with encode_image_naflex"):
        torch_encoder(Fixed(), tokenize).encode_images(batch)


def test_cli_evaluates_a_naflex_checkpoint_with_max_num_patches(
    naflex_checkpoint: Path, shards: list[str], tmp_path: Path
) -> None:
    captions = [f"a {name} thing" for name in COLORS] * 20 + ["something else entirely"] * 5
    # A vocabulary inside the tiny model's 100 ids (the siglip2 preset's byte fallback needs 256).
    spm = siglip_data.train_sentencepiece(captions, tmp_path / "spm.model", vocab_size=24)
    names = tmp_path / "names.txt"
    names.write_text("\n".join(COLORS) + "\n")
    common = ["--model", str(naflex_checkpoint), "--tokenizer", str(spm)]
    common += ["--no-progress", "--no-plots"]
    dataset = f"shards:{shards[0]}"
    arguments = ["zeroshot", *common, "--dataset", dataset, "--class-names", str(names)]
    assert main([*arguments, "--out", str(tmp_path / "z"), "--max-num-patches", "16"]) == 0
    record = json.loads((tmp_path / "z" / "results.json").read_text())
    assert record["context"]["max_num_patches"] == 16
    assert "image_size" not in record["context"]
    arguments = ["retrieval", *common, "--dataset", dataset, "--out", str(tmp_path / "r")]
    assert main(arguments) == 0
    record = json.loads((tmp_path / "r" / "results.json").read_text())
    assert record["context"]["max_num_patches"] == 256  # transformers' default


def test_max_num_patches_on_a_fixed_resolution_model_is_a_usage_error(
    tmp_path: Path, shards: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    siglip_models.torch.SiglipModel("tiny-test").save_pretrained(tmp_path / "fixed")
    spm = siglip_data.train_sentencepiece(
        ["a red thing", "a blue thing"] * 30, tmp_path / "spm.model", vocab_size=16
    )
    arguments = ["retrieval", "--model", str(tmp_path / "fixed"), "--tokenizer", str(spm)]
    arguments += ["--dataset", f"shards:{shards[0]}", "--out", str(tmp_path / "out")]
    assert main([*arguments, "--max-num-patches", "64"]) == 2
    assert "fixed-resolution model" in capsys.readouterr().err
