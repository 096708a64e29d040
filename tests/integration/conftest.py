"""Harness for the cross-package tests: the same rules as every package's tests.

- one torch thread (tiny models on a shared 2-core machine: more threads only contend);
- JAX: strict dtype promotion and 8 fake CPU devices, set here before any device is used;
- tests that read the Debian datasets skip (naming the command) when they are missing, unless
  ``SIGLIP_REQUIRE_DATA=1`` (CI installs them), where a missing dataset fails.
"""

from __future__ import annotations

import os

import jax
import pytest
import torch

torch.set_num_threads(1)
jax.config.update("jax_numpy_dtype_promotion", "strict")
jax.config.update("jax_num_cpu_devices", 8)


def require_debian_data(*datasets: str) -> None:
    """Skip (or fail under ``SIGLIP_REQUIRE_DATA=1``) when a Debian dataset is not installed."""
    import siglip_data

    try:
        siglip_data.builders.check_debian_packages(*datasets)
    except siglip_data.builders.MissingDebianPackageError as error:
        if os.environ.get("SIGLIP_REQUIRE_DATA") == "1":
            raise
        pytest.skip(f"needs the Debian packages: {error.command}")


@pytest.fixture(scope="session")
def debian_data() -> object:
    """``debian_data("emoji", "fashion-mnist")``: skip or fail as above."""
    return require_debian_data
