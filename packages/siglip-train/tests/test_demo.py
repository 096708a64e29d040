"""The demo's batches (rank slices, resume), its metric wiring, and a small end-to-end run."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from siglip_train import apply_overrides
from siglip_train.demo import DemoBatches
from siglip_train.demo import DemoData
from siglip_train.demo import build_demo_model
from siglip_train.demo import chance_levels
from siglip_train.demo import demo_config
from siglip_train.demo import evaluate_demo
from siglip_train.demo import run_demo


def fake_data(tmp_path: Path, rng: np.random.Generator) -> DemoData:
    """Arrays whose pixels and token ids encode the label, for a model that reads them back."""
    import siglip_data

    names = [f"thing {word}" for word in ("alpha", "beta", "gamma", "delta", "omega")]
    siglip_data.train_sentencepiece(names * 10, tmp_path / "fake.model", vocab_size=18)

    def images(labels: np.ndarray) -> np.ndarray:
        return np.broadcast_to(labels[:, None, None, None] * 20, (len(labels), 8, 8, 3)).astype(
            np.uint8
        )

    train_labels = rng.integers(0, 10, 200)
    test_labels = rng.integers(0, 10, 50)
    captions = np.zeros((10, 3, 8), dtype=np.int32)
    captions[:, :, 0] = np.arange(10)[:, None]
    emoji_captions = np.zeros((30, 4, 8), dtype=np.int32)
    emoji_captions[:, :, 0] = np.arange(30)[:, None] % 10
    return DemoData(
        emoji_train_pixels=images(np.arange(30) % 10),
        emoji_train_captions=emoji_captions,
        emoji_heldout_pixels=images(np.arange(5)),
        emoji_heldout_names=names,
        emoji_heldout_groups=np.arange(5) % 3,
        emoji_groups=["Smileys", "Animals", "Flags"],
        fashion_train_pixels=images(train_labels),
        fashion_train_labels=train_labels,
        fashion_test_pixels=images(test_labels),
        fashion_test_labels=test_labels,
        fashion_captions=captions,
        fashion_class_names=[f"class {i}" for i in range(10)],
        fashion_templates=["a {}", "the {}", "one {}"],
        tokenizer_file=str(tmp_path / "fake.model"),
    )


class LabelReader(torch.nn.Module):
    """Image -> one-hot of (pixel value / 20); text -> one-hot of the first token id."""

    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        labels = torch.round((pixels[:, 0, 0, 0] + 1) * 127.5 / 20).long()
        return torch.nn.functional.one_hot(labels, 16).float() + 1e-3

    def encode_text(self, token_ids: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.one_hot(token_ids[:, 0].long() % 16, 16).float() + 1e-3


@pytest.fixture(scope="module")
def shared_data(tmp_path_factory: pytest.TempPathFactory) -> DemoData:
    return fake_data(tmp_path_factory.mktemp("demo-data"), np.random.default_rng(0))


@given(world_size=st.sampled_from([1, 2, 4, 8]), step=st.integers(0, 50))
def test_rank_slices_concatenate_to_the_single_process_batch(
    shared_data: DemoData, world_size: int, step: int
) -> None:
    data = shared_data
    single = DemoBatches(data, batch_size=16, seed=1).batch(step)
    shards = [
        DemoBatches(data, batch_size=16, seed=1, rank=r, world_size=world_size).batch(step)
        for r in range(world_size)
    ]
    for key in ("pixels", "token_ids"):
        np.testing.assert_array_equal(np.concatenate([s[key] for s in shards]), single[key])


def test_batches_resume_from_their_state(shared_data: DemoData) -> None:
    data = shared_data
    reference = iter(DemoBatches(data, batch_size=8, seed=2))
    expected = [next(reference)["token_ids"] for _ in range(6)]
    first = DemoBatches(data, batch_size=8, seed=2)
    iterator = iter(first)
    for _ in range(4):
        next(iterator)
    resumed = DemoBatches(data, batch_size=8, seed=2)
    resumed.load_state_dict(json.loads(json.dumps(first.state_dict())))
    iterator = iter(resumed)
    for index in (4, 5):
        np.testing.assert_array_equal(next(iterator)["token_ids"], expected[index])
    with pytest.raises(ValueError, match="another seed or batch size"):
        DemoBatches(data, batch_size=8, seed=3).load_state_dict(first.state_dict())


def test_batches_mix_the_requested_fraction_with_matching_captions(shared_data: DemoData) -> None:
    data = shared_data
    batch = DemoBatches(data, batch_size=20, fashion_mnist_fraction=0.25, augment=False).batch(0)
    labels_from_pixels = batch["pixels"][:, 0, 0, 0] // 20
    np.testing.assert_array_equal(labels_from_pixels, batch["token_ids"][:, 0])


def test_metrics_of_a_model_that_reads_labels_are_perfect_on_fashion(shared_data: DemoData) -> None:
    data = shared_data
    results = evaluate_demo(LabelReader(), data)
    assert results["fashion_mnist_zeroshot_top1"] == 1.0
    assert results["fashion_mnist_zeroshot_balanced_accuracy"] == 1.0
    chance = chance_levels(data)
    assert chance["fashion_mnist_zeroshot_top1"] == 0.1
    assert chance["emoji_heldout_image_to_text_R@1"] == 1 / 5
    assert chance["emoji_group_balanced_accuracy"] == 1 / 3
    # Five held-out emoji: R@5 and R@10 hold every caption, whatever the model.
    for direction in ("image_to_text", "text_to_image"):
        assert results[f"emoji_heldout_{direction}_R@5"] == 1.0
        assert results[f"emoji_heldout_{direction}_R@10"] == 1.0
    assert set(chance) <= set(results)


def test_the_demo_model_is_built_without_touching_the_model_registry() -> None:
    import siglip_models

    before = siglip_models.list_configs()
    model = build_demo_model(demo_config(), vocab_size=50)
    assert siglip_models.list_configs() == before
    assert model.config.text.vocab_size == 50
    assert model.log_scale.item() == pytest.approx(np.log(10.0))
    assert model.bias.item() == -10.0


@pytest.mark.usefixtures("debian_data")
def test_small_end_to_end_demo_writes_the_report(tmp_path: Path) -> None:
    config = apply_overrides(
        demo_config(),
        [
            "steps=3",
            "data.batch_size=16",
            "optimizer.warmup_steps=1",
            "logging.every_steps=1",
            "logging.progress_bar=false",
            "num_threads=1",
        ],
    )
    report = run_demo(
        tmp_path / "demo", config=config, data_root=tmp_path / "data", data_limit=300, eval_every=2
    )
    saved = json.loads((tmp_path / "demo" / "report.json").read_text())
    for key in (
        "fashion_mnist_zeroshot_top1",
        "emoji_heldout_image_to_text_R@10",
        "emoji_group_balanced_accuracy",
        "train_seconds",
    ):
        assert saved[key] == report[key]
    assert saved["steps"] == 3
    for key in (
        "emoji_crossstyle_heldout_image_to_text_R@10",
        "emoji_crossstyle_seen_names_image_to_text_R@10",
    ):
        assert 0.0 <= saved[key] <= 1.0
    sets = saved["emoji_eval_sets"]
    assert sets["crossstyle_heldout"]["images"] == sets["crossstyle_seen_names"]["images"] > 0
    assert saved["emoji_styles"] == {"train": ["noto", "symbola"], "heldout": "twemoji"}
    assert saved["emoji_text"]["unknown_tokens"] == 0
    assert saved["emoji_text"]["names_with_a_collision"] == 0
    assert saved["demo"]["fashion_mnist_fraction"] == 0.5  # the demo's own settings are recorded
    assert saved["config"]["output_dir"] == str(tmp_path / "demo")
    for plot in ("loss.png", "scale_bias.png", "recall_at_k.png", "eval_curve.png"):
        assert (tmp_path / "demo" / plot).stat().st_size > 1000
    assert "| fashion_mnist_zeroshot_top1 |" in (tmp_path / "demo" / "report.md").read_text()


def test_augmented_batches_resume_exactly_and_refuse_another_augmentation(
    shared_data: DemoData,
) -> None:
    from siglip_data.augment import BatchAugmentation

    data = shared_data
    reference = iter(DemoBatches(data, batch_size=8, seed=4))
    expected = [next(reference)["pixels"] for _ in range(5)]
    first = DemoBatches(data, batch_size=8, seed=4)
    iterator = iter(first)
    for _ in range(3):
        next(iterator)
    resumed = DemoBatches(data, batch_size=8, seed=4)
    resumed.load_state_dict(json.loads(json.dumps(first.state_dict())))
    iterator = iter(resumed)
    for index in (3, 4):
        np.testing.assert_array_equal(next(iterator)["pixels"], expected[index])
    other = DemoBatches(data, batch_size=8, seed=4, augmentation=BatchAugmentation(grayscale=1.0))
    with pytest.raises(ValueError, match="another augmentation"):
        other.load_state_dict(first.state_dict())
    unaugmented = DemoBatches(data, batch_size=8, seed=4, augment=False).batch(0)["pixels"]
    assert not np.array_equal(unaugmented, expected[0])


def test_the_emoji_protocol_is_public_and_scores_a_label_reader(shared_data: DemoData) -> None:
    from siglip_train.demo import EmojiEvalSet
    from siglip_train.demo import evaluate_emoji_retrieval

    data = shared_data
    tokenizer = data.tokenizer(8)
    scores = evaluate_emoji_retrieval(
        LabelReader(),
        data.emoji_heldout_pixels,
        data.emoji_heldout_names,
        tokenizer=tokenizer,
        groups=data.emoji_heldout_groups,
        group_names=data.emoji_groups,
    )
    assert set(scores) >= {"image_to_text_R@10", "group_balanced_accuracy"}
    with pytest.raises(ValueError, match="names repeat"):
        evaluate_emoji_retrieval(
            LabelReader(), data.emoji_heldout_pixels[:2], ["a", "a"], tokenizer=tokenizer
        )
    with_sets = DemoData(
        **{
            **{f.name: getattr(data, f.name) for f in dataclasses.fields(data)},
            "emoji_eval_sets": {
                "crossstyle_heldout": EmojiEvalSet(
                    data.emoji_heldout_pixels, data.emoji_heldout_names, data.emoji_heldout_groups
                )
            },
        }
    )
    results = evaluate_demo(LabelReader(), with_sets, fashion_limit=10)
    assert results["emoji_crossstyle_heldout_image_to_text_R@10"] == 1.0
    assert "emoji_crossstyle_heldout_image_to_text_R@10" in chance_levels(with_sets)


def test_name_statistics_count_collisions_and_unknown_tokens(shared_data: DemoData) -> None:
    from siglip_train.demo import name_statistics

    tokenizer = shared_data.tokenizer(3)
    # "thing alpha" and "thing beta" share their first two tokens: cut to 2 + EOS they collide.
    stats = name_statistics(tokenizer, ["thing alpha", "thing beta", "zzz!"])
    assert stats["names_with_a_collision"] == 2
    assert stats["unknown_tokens"] >= 1
    assert stats["truncated_names"] >= 2


def test_the_30min_budget_is_three_times_the_steps_with_the_same_schedule_shape() -> None:
    from siglip_train.demo import DEMO_BUDGETS

    default = apply_overrides(demo_config(), list(DEMO_BUDGETS["10min"]))
    longer = apply_overrides(demo_config(), list(DEMO_BUDGETS["30min"]))
    assert (default.steps, longer.steps) == (1000, 3000)
    assert longer.optimizer.warmup_steps / longer.steps == default.optimizer.warmup_steps / 1000
