"""vpl_jax: pluralistic preference learning in JAX."""
