"""Issue 19's API findings: a trained run loads by its step or run directory, and every public
function that takes a path takes ``str`` as well as ``os.PathLike``."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
import torch

import siglip_data
import siglip_eval
import siglip_models
import siglip_train
from siglip_models.torch import SiglipModel
from siglip_train import TrainConfig
from siglip_train import Trainer
from siglip_train import apply_overrides
from siglip_train import latest_checkpoint


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, SiglipModel]:
    run = tmp_path_factory.mktemp("paths") / "run"
    config = apply_overrides(
        TrainConfig(),
        [
            f"output_dir={run}",
            "steps=2",
            "optimizer.warmup_steps=1",
            "checkpoint.every_steps=1",
            "checkpoint.keep_last=0",
            "logging.progress_bar=false",
            "logging.tensorboard=false",
        ],
    )
    model = SiglipModel("tiny-test").train()
    generator = torch.Generator().manual_seed(0)
    batches = [
        {
            "pixels": torch.rand(8, 3, 32, 32, generator=generator) * 2 - 1,
            "token_ids": torch.randint(0, 100, (8, 16), generator=generator),
        }
        for _ in range(2)
    ]
    Trainer(model, batches, config).fit()
    return run, model


def test_latest_checkpoint_takes_a_str_and_a_path(trained_run) -> None:
    run, _ = trained_run
    newest = latest_checkpoint(str(run / "checkpoints"))
    assert newest is not None
    assert newest.name == "step_000000002"
    assert latest_checkpoint(run / "checkpoints") == newest
    assert latest_checkpoint(str(run / "no-such-dir")) is None


@pytest.mark.parametrize("where", ["step", "run", "model"])
def test_from_pretrained_loads_a_step_or_run_directory_as_the_trained_model(
    trained_run, where: str
) -> None:
    run, trained = trained_run
    step = run / "checkpoints" / "step_000000002"
    path = {"step": step, "run": run, "model": step / "model"}[where]
    loaded = SiglipModel.from_pretrained(str(path))
    for name, tensor in trained.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[name], tensor, rtol=0, atol=0)


def test_from_pretrained_on_a_directory_without_a_model_says_where_the_model_is(
    trained_run,
) -> None:
    run, _ = trained_run
    with pytest.raises(FileNotFoundError, match=r"config\.json files below it: .*step_00000000"):
        SiglipModel.from_pretrained(run.parent)


PACKAGES = (siglip_data, siglip_data.builders, siglip_eval, siglip_models, siglip_train)


def _public_callables():
    for package in PACKAGES:
        for name in package.__all__:
            value = getattr(package, name)
            if inspect.isclass(value):
                members = [
                    (f"{name}.{attribute}", member)
                    for attribute, member in vars(value).items()
                    if not attribute.startswith("_") and callable(member)
                ]
                classmethods = [
                    (f"{name}.{attribute}", member.__func__)
                    for attribute, member in vars(value).items()
                    if isinstance(member, (classmethod, staticmethod))
                    and not attribute.startswith("_")
                ]
                yield from members + classmethods
            elif callable(value):
                yield f"{package.__name__}.{name}", value


def test_every_public_path_parameter_accepts_str_and_os_pathlike() -> None:
    narrow = []
    for qualified, function in _public_callables():
        try:
            parameters = inspect.signature(function).parameters
        except (TypeError, ValueError):
            continue
        for name, parameter in parameters.items():
            annotation = str(parameter.annotation)
            if "Path" in annotation and not ("PathLike" in annotation and "str" in annotation):
                narrow.append(f"{qualified}({name}: {annotation})")
    assert not narrow, f"take str | os.PathLike[str]: {narrow}"
