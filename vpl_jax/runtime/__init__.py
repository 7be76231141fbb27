"""Leaf services every layer may use: checkpoints, progress bars, device sharding.

Nothing here imports another part of ``vpl_jax`` (a test walks the import graph), so the
libraries below the harness — reward trainers, the pipeline — can checkpoint and report progress
without importing the experiment scaffolding in :mod:`vpl_jax.harness`. Import the modules
themselves (``vpl_jax.runtime.checkpoint``, ``.progress``, ``.sharding``); orbax loads with the
first of them that needs it.
"""
