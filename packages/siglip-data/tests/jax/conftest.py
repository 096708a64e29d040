"""JAX settings for the adapter tests, set before any device is used: strict dtype promotion (an
implicit promotion in the adapter fails here) and 8 fake CPU devices (sharded placement)."""

import jax

jax.config.update("jax_numpy_dtype_promotion", "strict")
jax.config.update("jax_num_cpu_devices", 8)
