"""The docstring examples of every module of siglip_loss.jax run and hold."""

from __future__ import annotations

import doctest
import importlib
import io
import pkgutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import siglip_loss.jax

MODULES = [
    siglip_loss.jax.__name__,
    *(info.name for info in pkgutil.iter_modules(siglip_loss.jax.__path__, "siglip_loss.jax.")),
]


@pytest.mark.parametrize("module_name", MODULES)
def test_docstring_examples_hold(module_name: str) -> None:
    module = importlib.import_module(module_name)
    globs = {
        "jax": jax,
        "jnp": jnp,
        "np": np,
        "nnx": nnx,
        **vars(siglip_loss.jax),
        **vars(module),
    }
    output = io.StringIO()
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for test in doctest.DocTestFinder().find(module, globs=globs):
        runner.run(test, out=output.write)
    assert runner.failures == 0, output.getvalue()
