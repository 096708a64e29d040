"""siglip_train.jax's public names, and the import boundary between the two frameworks."""

from __future__ import annotations

import subprocess
import sys

import siglip_train.jax


def test_every_name_in_all_exists_is_public_and_sorted():
    names = list(siglip_train.jax.__all__)
    assert names == sorted(names)
    for name in names:
        assert hasattr(siglip_train.jax, name), name
        assert not name.startswith("_"), name


def test_import_siglip_train_imports_no_jax():
    code = "import sys, siglip_train; print(sorted({'jax', 'flax', 'optax', 'orbax'} & set(sys.modules)))"
    completed = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == "[]"


def test_import_siglip_train_jax_imports_no_torch():
    # The JAX path: the trainer, its configs and presets; torch only through the CLI's helpers.
    code = (
        "import sys, siglip_train.jax, siglip_train; siglip_train.get_preset('tiny-cpu');"
        " print(sorted({'torch'} & set(sys.modules)))"
    )
    completed = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == "[]"
