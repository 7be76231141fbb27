"""Many devices and hosts: the seed axis split across a device mesh by JAX's own SPMD runtime.

The trainers run S seeds (R policy runs) in one ``vmap`` over a leading axis. Inside
:func:`use_devices` — which :func:`vpl_jax.harness.run_experiment` enters with the run's
``--devices`` — the library's batched trainers (:func:`vpl_jax.rewards.fit`,
:func:`~vpl_jax.rewards.fit_chunked`, :class:`vpl_jax.pipeline.PolicyTrainer`) ask
:func:`placement` where their n runs go: it gives a 1-D :class:`~jax.sharding.Mesh` over as many
of the pool's devices as n fills evenly. The trainer places its per-run inputs (keys, per-seed
rewards) split along that axis with a ``NamedSharding`` (:meth:`Placement.split`), its shared
inputs (the data) whole on every device (:meth:`Placement.replicate`); ``jit`` propagates the
sharding through the whole run, so XLA partitions it, and the results come back whole on each
process's first device (:meth:`Placement.gather`): the code after a trainer runs as on one
device. Outside :func:`use_devices` nothing is placed (one device, as before).

On several hosts, :func:`join_processes` (``jax.distributed.initialize``) runs first on every
process; the pool then takes the same number of devices from every process, and gathering is
an all-gather across them, so every process holds every result (only process 0 writes them).

Try it on a CPU with ``XLA_FLAGS=--xla_force_host_platform_device_count=4`` (set before JAX
starts).
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
from collections.abc import Iterator, Sequence
from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

AXIS = "batch"

_POOL: contextvars.ContextVar[tuple[jax.Device, ...] | None] = contextvars.ContextVar(
    "vpl_jax_device_pool", default=None
)


# --- processes ------------------------------------------------------------------------------------
def join_processes(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
) -> None:
    """Joins this process to the others of the run (``jax.distributed.initialize``); call it
    before anything else touches JAX. Arguments left None are read from the cluster's
    environment (SLURM, Open MPI, Cloud TPU, ...), as ``jax.distributed.initialize`` does. On
    CPUs the processes exchange data through gloo."""
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address, num_processes, process_id)
    _mjx_defaults_to_a_local_device()


def _mjx_defaults_to_a_local_device() -> None:
    """Makes MuJoCo MJX place what it is given no device for on this process's first device.

    MJX (mujoco 3.3+) picks ``jax.devices()[0]`` when no device is given, and Brax's
    ``mjcf.load_model`` gives none: on several processes that is process 0's device, so the
    tasks' models built on any other process would hold no data ("Closing over jax.Array that
    spans non-addressable devices"). One process keeps MJX's own default.
    """
    try:
        from mujoco.mjx._src import io
    except ImportError:  # no MJX here: nothing places a model
        return
    resolve = io._resolve_impl_and_device

    def local(impl=None, device=None):
        return resolve(impl, jax.local_devices()[0] if device is None else device)

    io._resolve_impl_and_device = local


def is_writer() -> bool:
    """Whether this process writes results and checkpoints (process 0; the only one alone)."""
    return jax.process_index() == 0


def process_zero_says(flag: bool) -> bool:
    """Process 0's ``flag``, on every process (a collective: every process calls it)."""
    if jax.process_count() == 1:
        return flag
    return bool(multihost_utils.broadcast_one_to_all(np.int32(flag)))


# --- the device pool ------------------------------------------------------------------------------
def _process_devices() -> list[list[jax.Device]]:
    """Each process's devices, by process index, each list ordered by device id."""
    by_process = [[] for _ in range(jax.process_count())]
    for device in jax.devices():
        by_process[device.process_index].append(device)
    return [sorted(devices, key=lambda d: d.id) for devices in by_process]


def max_devices() -> int:
    """The most devices a pool can hold: the same number from every process."""
    return jax.process_count() * min(len(d) for d in _process_devices())


def device_pool(count: int | None = None) -> tuple[jax.Device, ...]:
    """``count`` devices (None: :func:`max_devices`), ``count / P`` of each of the P processes'
    devices, ordered by process. Raises ``ValueError`` when ``count`` is below 1, above
    :func:`max_devices`, or not a multiple of P."""
    processes, most = jax.process_count(), max_devices()
    count = most if count is None else count
    if not 1 <= count <= most:
        raise ValueError(f"devices={count}: must be between 1 and {most} (the devices here)")
    if count % processes:
        raise ValueError(f"devices={count}: must be a multiple of the {processes} processes")
    return tuple(d for devices in _process_devices() for d in devices[: count // processes])


def split_size(n: int, pool_size: int, processes: int = 1) -> int:
    """How many of ``pool_size`` devices n runs use: the largest count that divides n and is a
    multiple of ``processes`` (each process takes an equal share); 0 when n does not divide
    across the processes (every process then runs all n itself)."""
    fits = [d for d in range(processes, pool_size + 1, processes) if n % d == 0]
    return max(fits, default=0)


@contextlib.contextmanager
def use_devices(pool: Sequence[jax.Device]) -> Iterator[tuple[jax.Device, ...]]:
    """Within the block, batched trainers split their runs across ``pool``
    (:func:`device_pool`)."""
    token = _POOL.set(tuple(pool))
    try:
        yield tuple(pool)
    finally:
        _POOL.reset(token)


def active_pool() -> tuple[jax.Device, ...] | None:
    """The pool of the enclosing :func:`use_devices`, or None."""
    return _POOL.get()


# --- placing and gathering ------------------------------------------------------------------------
def _is_array(x) -> bool:
    return isinstance(x, jax.Array | np.ndarray)


def _is_key(x) -> bool:
    return isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def _put(x, sharding: jax.sharding.Sharding):
    """``device_put`` that also places this process's arrays (typed PRNG keys too) on devices
    of other processes: each process gives its own copy of ``x``, from the host, and keeps
    its own devices' parts."""
    if _is_key(x):
        data = _put(jax.random.key_data(x), sharding)
        return jax.random.wrap_key_data(data, impl=jax.random.key_impl(x))
    if not sharding.is_fully_addressable and isinstance(x, jax.Array):
        x = np.asarray(x)  # device to device transfers stay within a process
    return jax.device_put(x, sharding)


@dataclasses.dataclass(frozen=True)
class Placement:
    """Where n stacked runs go: split along their leading axis across ``mesh``, or, with no
    mesh, left where they are (one device; on several processes every process runs all n).

    Attributes:
      mesh: a 1-D mesh with axis ``"batch"``, or None.
    """

    mesh: Mesh | None = None

    @property
    def num_devices(self) -> int:
        return 1 if self.mesh is None else self.mesh.devices.size

    def split(self, tree: Any) -> Any:
        """Every array leaf's leading axis (runs: ``[n, ...]``) split across the mesh."""
        if self.mesh is None:
            return tree
        n = self.num_devices
        for leaf in jax.tree.leaves(tree):
            if _is_array(leaf) and (leaf.ndim == 0 or leaf.shape[0] % n):
                raise ValueError(
                    f"a leading axis of shape {leaf.shape} does not split across {n} devices; "
                    f"use a multiple of {n} seeds/runs"
                )
        sharding = NamedSharding(self.mesh, PartitionSpec(AXIS))
        return jax.tree.map(lambda x: _put(x, sharding) if _is_array(x) else x, tree)

    def replicate(self, tree: Any) -> Any:
        """Every array leaf whole on every device of the mesh (inputs shared by the runs)."""
        if self.mesh is None:
            return tree
        sharding = NamedSharding(self.mesh, PartitionSpec())
        return jax.tree.map(lambda x: _put(x, sharding) if _is_array(x) else x, tree)

    def gather(self, tree: Any) -> Any:
        """Every array leaf whole on this process's first device of the mesh (an all-gather
        across devices and processes): what follows runs as on one device."""
        arrays = [x for x in jax.tree.leaves(tree) if isinstance(x, jax.Array)]
        if self.mesh is None or any(isinstance(x, jax.core.Tracer) for x in arrays):
            return tree  # a trace (e.g. jax.eval_shape of a chunk) has nothing to gather
        whole = jax.jit(lambda t: t, out_shardings=NamedSharding(self.mesh, PartitionSpec()))
        gathered = iter(whole(arrays))
        return jax.tree.map(
            lambda x: next(gathered).addressable_data(0) if isinstance(x, jax.Array) else x, tree
        )


def placement(n: int, pool: Sequence[jax.Device] | None = None) -> Placement:
    """Where n runs go in ``pool`` (default: the :func:`active_pool`): split across the
    :func:`split_size` first devices of each process's share, or nowhere (no pool, one device,
    or n not dividing across the processes)."""
    pool = active_pool() if pool is None else tuple(pool)
    if not pool:
        return Placement()
    processes = jax.process_count()
    count = split_size(n, len(pool), processes)
    if count <= 1:
        return Placement()
    share, per = len(pool) // processes, count // processes
    devices = [pool[p * share + i] for p in range(processes) for i in range(per)]
    return Placement(Mesh(np.asarray(devices), (AXIS,)))


def place_like(tree: Any, template: Any) -> Any:
    """Every array leaf of ``tree`` placed as the matching leaf of ``template`` is (its
    sharding; host values onto devices, of other processes too)."""
    return jax.tree.map(
        lambda x, t: _put(x, t.sharding) if isinstance(t, jax.Array) else x, tree, template
    )


def whole(tree: Any) -> Any:
    """``tree`` with every array that spans other processes' devices gathered whole onto this
    process's first device (a collective: every process calls it); other leaves unchanged."""
    leaves, treedef = jax.tree.flatten(tree)
    groups: dict[tuple[jax.Device, ...], list[int]] = {}
    for i, x in enumerate(leaves):
        if isinstance(x, jax.Array) and not x.is_fully_addressable:
            devices = tuple(sorted(x.sharding.device_set, key=lambda d: d.id))
            groups.setdefault(devices, []).append(i)
    for devices, where in groups.items():
        mesh = Mesh(np.asarray(devices), (AXIS,))
        gathered = Placement(mesh).gather([leaves[i] for i in where])
        for i, x in zip(where, gathered, strict=True):
            leaves[i] = x
    return jax.tree.unflatten(treedef, leaves)
