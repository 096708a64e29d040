"""The docstring examples of the numpy oracle and of siglip_loss.testing run and hold."""

from __future__ import annotations

import doctest
import importlib
import io
import pkgutil

import numpy as np
import pytest

import siglip_loss.numpy
import siglip_loss.testing


def modules_of(package: object) -> list[str]:
    names = [package.__name__]  # type: ignore[attr-defined]
    names += [info.name for info in pkgutil.iter_modules(package.__path__, f"{names[0]}.")]  # type: ignore[attr-defined]
    return names


@pytest.mark.parametrize(
    "module_name", [*modules_of(siglip_loss.numpy), *modules_of(siglip_loss.testing)]
)
def test_docstring_examples_hold(module_name: str) -> None:
    module = importlib.import_module(module_name)
    public = importlib.import_module(module_name.rsplit("._", 1)[0])
    globs = {"np": np, **vars(public), **vars(module)}
    output = io.StringIO()
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for test in doctest.DocTestFinder().find(module, globs=globs):
        runner.run(test, out=output.write)
    assert runner.failures == 0, output.getvalue()
