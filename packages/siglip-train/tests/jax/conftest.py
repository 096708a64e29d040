"""JAX settings for the JAX trainer's tests, made before any device is used.

Strict dtype promotion (an accidental float64/int mix is an error), eight fake CPU devices
(meshes of 1, 2, 4 and 8), and a compilation cache shared by the tests of one session: every
trainer jits its own step, and identical programs then compile once.
"""

from __future__ import annotations

import tempfile

import jax

jax.config.update("jax_numpy_dtype_promotion", "strict")
jax.config.update("jax_num_cpu_devices", 8)
jax.config.update("jax_compilation_cache_dir", tempfile.mkdtemp(prefix="siglip-train-jax-cache-"))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
