"""JAX settings for the Flax adapter tests, set before any device is used.

Strict dtype promotion (an accidental float64 or int/float mix is an error, not a silent
upcast) and 8 fake CPU devices, the same in every package's JAX tests.
"""

from __future__ import annotations

import jax

jax.config.update("jax_numpy_dtype_promotion", "strict")
jax.config.update("jax_num_cpu_devices", 8)
