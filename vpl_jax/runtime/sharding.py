"""Many devices: shard the seed/user/environment axis with ``jax.sharding``.

Everything in the framework batches with ``vmap`` over a leading axis (seeds, users,
environments). :func:`shard_map_over` runs such a batched function with that axis split across a
1-D device ``Mesh`` via ``NamedSharding`` under ``jit`` — XLA partitions the computation (SPMD),
so the same code runs on one CPU, one GPU, or many; on several hosts, call
``jax.distributed.initialize()`` first and the mesh spans every host's devices.

On a CPU you can simulate devices with ``XLA_FLAGS=--xla_force_host_platform_device_count=4``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

AXIS = "batch"


def batch_mesh(devices: list | None = None) -> Mesh:
    """A 1-D mesh named ``"batch"`` over ``devices`` (default: every device of every host)."""
    devices = jax.devices() if devices is None else devices
    return Mesh(np.asarray(devices), (AXIS,))


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Leading axis split across the mesh, the rest replicated."""
    return NamedSharding(mesh, PartitionSpec(AXIS))


def shard_batch(tree: Any, mesh: Mesh) -> Any:
    """Places every leaf's leading axis across the mesh (it must divide evenly)."""
    n = mesh.devices.size
    for leaf in jax.tree.leaves(tree):
        if leaf.shape[0] % n:
            raise ValueError(
                f"leading axis of size {leaf.shape[0]} does not divide across {n} devices; "
                f"use a multiple of {n} seeds/users/environments"
            )
    return jax.device_put(tree, batch_sharding(mesh))


def shard_map_over(fn: Callable, mesh: Mesh | None = None) -> Callable:
    """``jit(vmap(fn))`` with inputs and outputs sharded along their leading (batch) axis.

    ``fn`` is written for one element (one seed, one user); every argument of the returned
    function carries the batch axis first.
    """
    mesh = batch_mesh() if mesh is None else mesh
    sharding = batch_sharding(mesh)
    batched = jax.jit(jax.vmap(fn), out_shardings=sharding)

    def run(*args):
        return batched(*shard_batch(args, mesh))

    return run
