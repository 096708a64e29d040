"""JAX settings for the Flax tests, made before any device is used.

Strict dtype promotion turns an accidental float64/bfloat16 mix into an error instead of a silent
upcast; eight fake CPU devices let sharding tests run on one machine.
"""

from __future__ import annotations

import jax

jax.config.update("jax_numpy_dtype_promotion", "strict")
jax.config.update("jax_num_cpu_devices", 8)
