"""The siglip-eval command line and the report files, from saved embeddings."""

from __future__ import annotations

import json

import numpy as np
import pytest

from siglip_eval import retrieval_from_embeddings
from siglip_eval import zeroshot_from_embeddings
from siglip_eval._cli import main
from siglip_eval._report import markdown_summary
from siglip_eval._report import write_report


def test_zeroshot_from_embeddings_writes_json_markdown_and_plot(tmp_path, capsys) -> None:
    rng = np.random.default_rng(0)
    class_emb = rng.normal(size=(6, 8))
    labels = np.arange(60) % 6
    image_emb = class_emb[labels] + 0.8 * rng.normal(size=(60, 8))
    path = tmp_path / "pets.npz"
    np.savez(
        path,
        image_emb=image_emb,
        class_emb=class_emb,
        labels=labels,
        class_names=np.array([f"c{i}" for i in range(6)]),
    )
    assert main(["zeroshot", "--embeddings", str(path), "--out", str(tmp_path / "out")]) == 0
    record = json.loads((tmp_path / "out" / "results.json").read_text())
    expected = zeroshot_from_embeddings(image_emb, class_emb, labels, [f"c{i}" for i in range(6)])
    assert record["metrics"] == expected.metrics
    assert record["confusion_matrix"] == expected.confusion.tolist()
    assert sum(record["images_per_class"].values()) == 60
    assert (tmp_path / "out" / "confusion_matrix.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    markdown = (tmp_path / "out" / "summary.md").read_text()
    assert "| top1 |" in markdown
    assert "| c0 | 10 |" in markdown
    assert "top1" in capsys.readouterr().out


def test_retrieval_from_embeddings_writes_recall_curve(tmp_path) -> None:
    rng = np.random.default_rng(1)
    image_emb = rng.normal(size=(20, 8))
    text_to_image = np.repeat(np.arange(20), 2)
    text_emb = image_emb[text_to_image] + rng.normal(size=(40, 8))
    path = tmp_path / "coco.npz"
    np.savez(path, image_emb=image_emb, text_emb=text_emb, text_to_image=text_to_image)
    assert (
        main(
            [
                "retrieval",
                "--embeddings",
                str(path),
                "--out",
                str(tmp_path),
                "--ks",
                "1,5",
                "--no-progress",
            ]
        )
        == 0
    )
    record = json.loads((tmp_path / "results.json").read_text())
    expected = retrieval_from_embeddings(image_emb, text_emb, text_to_image, ks=(1, 5))
    assert record["metrics"] == expected.metrics
    assert record["recall_curve"]["text_to_image"][0] == expected.metrics["text_to_image_R@1"]
    assert (tmp_path / "recall_at_k.png").stat().st_size > 1000


def test_linear_probe_from_embeddings(tmp_path) -> None:
    rng = np.random.default_rng(2)
    centers = rng.normal(size=(3, 6)) * 3
    labels = np.arange(90) % 3
    features = centers[labels] + rng.normal(size=(90, 6))
    path = tmp_path / "probe.npz"
    np.savez(
        path,
        train_features=features[:60],
        train_labels=labels[:60],
        test_features=features[60:],
        test_labels=labels[60:],
    )
    assert (
        main(["linear-probe", "--embeddings", str(path), "--out", str(tmp_path), "--no-plots"]) == 0
    )
    record = json.loads((tmp_path / "results.json").read_text())
    assert record["task"] == "linear-probe"
    assert record["metrics"]["top1"] > 0.9
    assert "| C |" in (tmp_path / "summary.md").read_text()


def test_nan_top5_is_null_in_strict_json(tmp_path) -> None:
    result = zeroshot_from_embeddings(np.eye(2), np.eye(2), [0, 1], ["a", "b"])
    write_report(result, tmp_path, plots=False)
    record = json.loads((tmp_path / "results.json").read_text())
    assert record["metrics"]["top5"] is None
    assert "| top5 | n/a |" in markdown_summary(result)


def test_bad_arguments_exit_with_a_message(tmp_path, capsys) -> None:
    path = tmp_path / "wrong.npz"
    np.savez(path, image_emb=np.eye(2))
    assert main(["zeroshot", "--embeddings", str(path), "--out", str(tmp_path)]) == 2
    assert "lacks arrays" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["zeroshot", "--out", str(tmp_path)])
    assert (
        main(
            ["zeroshot", "--model", str(tmp_path), "--dataset", "nonsense", "--out", str(tmp_path)]
        )
        == 2
    )
