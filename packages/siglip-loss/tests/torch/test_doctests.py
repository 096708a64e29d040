"""The docstring examples of every module of siglip_loss.torch run and hold."""

from __future__ import annotations

import doctest
import importlib
import io
import pkgutil

import numpy as np
import pytest
import torch

import siglip_loss.torch

MODULES = [
    siglip_loss.torch.__name__,
    *(info.name for info in pkgutil.iter_modules(siglip_loss.torch.__path__, "siglip_loss.torch.")),
]


@pytest.mark.parametrize("module_name", MODULES)
def test_docstring_examples_hold(module_name: str) -> None:
    module = importlib.import_module(module_name)
    globs = {"torch": torch, "np": np, **vars(siglip_loss.torch), **vars(module)}
    output = io.StringIO()
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    torch.manual_seed(0)
    for test in doctest.DocTestFinder().find(module, globs=globs):
        runner.run(test, out=output.write)
    assert runner.failures == 0, output.getvalue()
