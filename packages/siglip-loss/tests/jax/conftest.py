"""JAX tests run with strict dtype promotion: no silent bfloat16 -> float32 mixing."""

from __future__ import annotations

import jax

jax.config.update("jax_numpy_dtype_promotion", "strict")
