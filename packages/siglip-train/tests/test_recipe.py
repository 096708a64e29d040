"""The SigLIP 2 recipe trainer: EMA teacher, optimizer state at switch-on, resume, ACID, errors."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from siglip_train import OptimizerConfig
from siglip_train import TrainConfig
from siglip_train.recipe import RecipeConfig
from siglip_train.recipe import RecipeTrainer
from siglip_train.recipe import SceneBatches
from siglip_train.recipe import SceneData
from siglip_train.recipe import acid_select
from siglip_train.recipe import decoder_sequence
from siglip_train.recipe import per_example_sigmoid_loss

IMAGE_SIZE = 32


def _scenes(count: int = 24, seed: int = 0) -> SceneData:
    rng = np.random.default_rng(seed)
    names = ["cat face", "sneaker", "apple", "bag", "red car", "dress"]
    objects = []
    captions = []
    for _ in range(count):
        chosen = rng.choice(len(names), int(rng.integers(1, 3)), replace=False)
        items = []
        for index in chosen:
            x0, y0 = (int(v) for v in rng.integers(0, IMAGE_SIZE // 2, 2))
            box = [x0, y0, x0 + int(rng.integers(4, 16)), y0 + int(rng.integers(4, 16))]
            items.append({"name": names[index], "box": box, "category_label": int(index) + 1})
        objects.append(items)
        captions.append(" and ".join(f"a {item['name']}" for item in items))
    pixels = rng.integers(0, 256, (count, IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
    maps = np.zeros((count, IMAGE_SIZE, IMAGE_SIZE), dtype=np.int64)
    return SceneData(pixels, captions, objects, maps, IMAGE_SIZE)


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Any:
    import siglip_data
    from siglip_train.recipe import scene_corpus

    path = tmp_path_factory.mktemp("tokenizer") / "scenes.model"
    corpus = scene_corpus(_scenes(60), box_bins=100)
    siglip_data.train_sentencepiece(corpus, str(path), vocab_size=48, preset="siglip")
    return siglip_data.SentencePieceTokenizer(str(path), preset="siglip", length=16)


def _model(vocab_size: int, seed: int = 0) -> Any:
    from siglip_models import SiglipConfig
    from siglip_models import TextConfig
    from siglip_models import VisionConfig
    from siglip_models.torch import SiglipModel

    torch.manual_seed(seed)
    return SiglipModel(
        SiglipConfig(
            vision=VisionConfig(
                image_size=IMAGE_SIZE, patch_size=8, width=32, depth=2, num_heads=2, mlp_dim=64
            ),
            text=TextConfig(
                vocab_size=vocab_size,
                max_length=16,
                width=32,
                depth=1,
                num_heads=2,
                mlp_dim=64,
                embed_dim=32,
                pad_id=1,
            ),
        )
    )


SMALL_HEADS = {"head_hidden": 32, "head_bottleneck": 16, "prototypes": 32, "local_crops": 2}


def _trainer(
    tokenizer: Any, *, steps: int = 6, batch_size: int = 8, seed: int = 0, **recipe: Any
) -> RecipeTrainer:
    batches = SceneBatches(_scenes(), tokenizer, batch_size=batch_size, decoder_length=20)
    config = TrainConfig(steps=steps, seed=seed, optimizer=OptimizerConfig(lr=1e-3, warmup_steps=1))
    return RecipeTrainer(
        _model(tokenizer.vocab_size, seed),
        batches,
        config,
        RecipeConfig(**{"locca": False, **SMALL_HEADS, **recipe}),
    )


def test_teacher_gets_no_gradient_and_follows_the_ema_exactly(tokenizer: Any) -> None:
    trainer = _trainer(tokenizer, distillation=True, distillation_start=0.0, teacher_momentum=0.9)
    trainer.fit(1)
    assert trainer.teacher is not None
    before = [p.detach().clone() for p in trainer.teacher.parameters()]
    trainer.fit(2)
    student = [*trainer.model.vision_model.parameters(), *trainer.student_heads.parameters()]
    teacher = list(trainer.teacher.parameters())
    assert len(teacher) == len(student) == len(before)
    moved = 0
    for old, new, source in zip(before, teacher, student, strict=True):
        assert not new.requires_grad
        assert new.grad is None
        expected = old.lerp(source.detach(), 0.1)  # m * old + (1 - m) * student
        assert torch.equal(new, expected)
        moved += int(not torch.equal(new, old))
    assert moved > len(teacher) // 2  # the EMA really moved the teacher


def test_switching_distillation_on_keeps_existing_optimizer_state_bit_identical(
    tokenizer: Any,
) -> None:
    trainer = _trainer(tokenizer, distillation=True, distillation_start=0.5)
    trainer.fit(3)  # steps 0-2 without distillation (it starts at step 3)
    assert not trainer.distilling
    before = copy.deepcopy(trainer.optimizer.state_dict())
    groups_before = len(trainer.optimizer.param_groups)
    trainer.start_distillation()
    after = trainer.optimizer.state_dict()
    assert len(after["param_groups"]) == groups_before + 1
    assert after["param_groups"][-1]["name"] == "distillation"
    for old_group, new_group in zip(before["param_groups"], after["param_groups"], strict=False):
        assert old_group == new_group
    assert before["state"].keys() == after["state"].keys()  # the new group starts empty
    for index, state in before["state"].items():
        for key, value in state.items():
            assert torch.equal(value, after["state"][index][key]), (index, key)
    trainer.fit(4)  # the new group's state appears on its first step, the others continue
    new_indices = set(range(sum(len(g["params"]) for g in before["param_groups"]), 10**6))
    assert new_indices & set(trainer.optimizer.state_dict()["state"])


def test_resume_mid_distillation_equals_an_uninterrupted_run(
    tokenizer: Any, tmp_path: Path
) -> None:
    recipe = {"distillation": True, "distillation_start": 0.5}
    uninterrupted = _trainer(tokenizer, **recipe)
    uninterrupted.fit()
    first = _trainer(tokenizer, **recipe)
    first.fit(4)  # distillation on since step 3
    assert first.distilling
    checkpoint = first.save_checkpoint(tmp_path / "step4.pt")
    resumed = _trainer(tokenizer, **recipe)
    resumed.load_checkpoint(checkpoint)
    assert resumed.distilling
    assert resumed.step == 4
    resumed.fit()
    for expected, actual in (
        (uninterrupted.trainable, resumed.trainable),
        (uninterrupted.teacher, resumed.teacher),
        (uninterrupted.student_heads, resumed.student_heads),
    ):
        for (name, value), other in zip(
            expected.state_dict().items(), actual.state_dict().values(), strict=True
        ):
            assert torch.equal(value, other), name
    assert torch.equal(uninterrupted.centers["patch"], resumed.centers["patch"])


def test_locca_trains_the_decoder_on_the_three_tasks_with_loss_after_the_prefix(
    tokenizer: Any,
) -> None:
    from siglip_loss.torch import token_cross_entropy
    from siglip_models import TextDecoderConfig
    from siglip_models.torch import SiglipTextDecoder

    batches = SceneBatches(_scenes(), tokenizer, batch_size=6, decoder_length=20)
    batch = batches.batch(0)
    weights = batch["decoder/aref/weights"]
    tokens = batch["decoder/aref/tokens"]
    for row_tokens, row_weights in zip(tokens, weights, strict=True):
        first = int(np.argmax(row_weights > 0))
        last = int(np.flatnonzero(row_weights)[-1])
        assert np.all(row_weights[first : last + 1] == 1)
        assert row_tokens[last] == tokenizer.eos_id
        # No loss on the task prefix "ARef: <name> :"; the loss covers the box and the EOS.
        (prefix,) = tokenizer.decode(row_tokens[None, :first])
        (target,) = tokenizer.decode(row_tokens[None, first:last])
        assert prefix.lower().startswith("aref")
        assert prefix.endswith(":")
        assert len(target.split()) == 4
    model = _model(tokenizer.vocab_size)
    decoder = SiglipTextDecoder(TextDecoderConfig.from_siglip(model.config, max_length=20, depth=1))
    trainer = RecipeTrainer(
        model,
        batches,
        TrainConfig(steps=3, optimizer=OptimizerConfig(warmup_steps=1)),
        RecipeConfig(locca=True, decoder_length=20),
        decoder=decoder,
    )
    head_before = decoder.head.weight.detach().clone()
    history = trainer.fit()
    assert {"sigmoid", "cap", "aref", "gcap"} <= set(history[-1].parts)
    total = history[0].parts["sigmoid"] + sum(history[0].parts[t] for t in ("cap", "aref", "gcap"))
    assert history[0].loss == pytest.approx(total, rel=1e-5)  # weight 1, summed over tasks
    assert not torch.equal(decoder.head.weight, head_before)  # the decoder is trained
    # recipe.vocab_chunk_size: the chunked-over-vocabulary loss gives the same step.
    losses = []
    for chunk in (0, 7):
        torch.manual_seed(0)
        same = SiglipTextDecoder(
            TextDecoderConfig.from_siglip(model.config, max_length=20, depth=1)
        )
        chunked = RecipeTrainer(
            _model(tokenizer.vocab_size),
            SceneBatches(_scenes(), tokenizer, batch_size=6, decoder_length=20),
            TrainConfig(steps=1, optimizer=OptimizerConfig(warmup_steps=1)),
            RecipeConfig(locca=True, decoder_length=20, vocab_chunk_size=chunk),
            decoder=same,
        )
        losses.append(chunked.fit()[0].parts)
    for task in ("cap", "aref", "gcap"):
        assert losses[1][task] == pytest.approx(losses[0][task], rel=1e-5)
    # The loss the trainer uses is the weighted CE over the target tokens only.
    logits = torch.zeros(1, 4, tokenizer.vocab_size)
    target = torch.tensor([[5, 6, 7, 1]])
    only_prefix = token_cross_entropy(logits, target, weights=torch.tensor([[1.0, 0, 0, 0]]))
    assert float(only_prefix) == pytest.approx(np.log(tokenizer.vocab_size))


def test_per_example_sigmoid_loss_matches_a_float64_oracle_and_acid_keeps_the_top() -> None:
    rng = np.random.default_rng(0)
    image, text = rng.normal(size=(2, 6, 4))
    image /= np.linalg.norm(image, axis=1, keepdims=True)
    text /= np.linalg.norm(text, axis=1, keepdims=True)
    logits = 3.0 * image @ text.T - 2.0
    signs = 2 * np.eye(6) - 1
    oracle = np.log1p(np.exp(-signs * logits)).sum(axis=1)
    losses = per_example_sigmoid_loss(
        torch.tensor(image), torch.tensor(text), scale=torch.tensor(3.0), bias=torch.tensor(-2.0)
    )
    np.testing.assert_allclose(losses.numpy(), oracle, rtol=1e-12)
    reference = torch.tensor([0.0, 5.0, 0.0, 1.0, 0.0, 0.0], dtype=torch.float64)
    learnability = oracle - reference.numpy()
    chosen = acid_select(losses, reference, 3)
    assert chosen.tolist() == sorted(np.argsort(-learnability)[:3].tolist())


def test_acid_trains_on_the_kept_fraction_of_each_super_batch(tokenizer: Any) -> None:
    reference = _model(tokenizer.vocab_size, seed=5)
    batches = SceneBatches(_scenes(), tokenizer, batch_size=8, decoder_length=20)
    trainer = RecipeTrainer(
        _model(tokenizer.vocab_size),
        batches,
        TrainConfig(steps=2, optimizer=OptimizerConfig(warmup_steps=1)),
        RecipeConfig(locca=False, acid=True, acid_keep_fraction=0.5),
        reference=reference,
    )
    selected = trainer._learnability_select(batches.batch(0))
    assert len(selected["token_ids"]) == 4
    assert set(selected["index"].tolist()) <= set(batches.batch(0)["index"].tolist())
    trainer.fit()
    assert all(not p.requires_grad for p in reference.parameters())


def test_a_task_prefix_longer_than_the_sequence_is_a_clear_error(tokenizer: Any) -> None:
    with pytest.raises(ValueError, match="task prefix is 5 tokens, longer than"):
        decoder_sequence([3] * 5, [4], length=6, eos_id=1, pad_id=1)
    with pytest.raises(ValueError, match="task prefix"):
        SceneBatches(_scenes(), tokenizer, batch_size=4, decoder_length=4)


def test_boxes_outside_the_canvas_are_a_clear_error(tokenizer: Any) -> None:
    scenes = _scenes()
    scenes.objects[3][0]["box"] = [10, 10, IMAGE_SIZE + 5, 20]
    with pytest.raises(ValueError, match="outside the 32x32 canvas"):
        SceneBatches(scenes, tokenizer, batch_size=4)


def test_a_teacher_of_another_shape_is_a_clear_error(tokenizer: Any) -> None:
    trainer = _trainer(tokenizer, distillation=True)
    other = _model(tokenizer.vocab_size)
    other.vision_model.head.probe.data = torch.zeros(1, 1, 16)
    with pytest.raises(ValueError, match="teacher has another shape than the student"):
        trainer.start_distillation(teacher=other.vision_model)


def test_distillation_on_a_model_without_patch_tokens_is_a_clear_error(tokenizer: Any) -> None:
    class PooledOnly(torch.nn.Module):
        def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
            return pixels.flatten(1)

    batches = SceneBatches(_scenes(), tokenizer, batch_size=4)
    with pytest.raises(ValueError, match=r"distillation .* needs a model with patch tokens"):
        RecipeTrainer(
            PooledOnly(),
            batches,
            TrainConfig(steps=2),
            RecipeConfig(locca=False, distillation=True),
        )


def test_recipe_config_rejects_bad_values() -> None:
    from siglip_train import ConfigError

    with pytest.raises(ConfigError, match=r"recipe\.distillation_start: expected in"):
        RecipeConfig(distillation_start=1.0)
    with pytest.raises(ConfigError, match="unknown field 'silk_weight'"):
        RecipeConfig.from_dict({"silk_weight": 1.0})


@pytest.mark.usefixtures("debian_data")
def test_load_scenes_reads_built_scenes_and_scales_boxes_and_maps(tmp_path: Path) -> None:
    import siglip_data
    from siglip_train.recipe import load_scenes

    siglip_data.builders.build_emoji_scenes(
        tmp_path, image_size=64, train_scenes=6, test_scenes=2, heldout_scenes=2, emoji_names=8
    )
    stored = load_scenes(tmp_path, "train")
    scaled = load_scenes(tmp_path, "train", image_size=32)
    assert stored.pixels.shape == (6, 64, 64, 3)
    assert scaled.pixels.shape == (6, 32, 32, 3)
    assert scaled.category_maps.shape == (6, 32, 32)
    assert stored.captions == scaled.captions
    for big, small in zip(stored.objects, scaled.objects, strict=True):
        for item, half in zip(big, small, strict=True):
            assert half["box"] == [value / 2 for value in item["box"]]
    assert set(np.unique(scaled.category_maps)) <= set(np.unique(stored.category_maps))
    assert scaled.category_maps.max() > 0
