"""Experiment configs, presets and the command line every experiment shares.

Each experiment is one frozen dataclass (subclassing :class:`ExperimentConfig`) with documented
fields, each declaring what it accepts (:func:`vpl_jax.checks.checked`), a dict of named presets
(at least ``cpu``, the default, and ``paper``), and a ``validate`` method for the rules that
relate fields. :func:`parse` turns ``argv`` into a validated config::

    python experiments/NAME.py --preset cpu --run-name RUN [--seed N] [--field value ...]

``--preset`` picks the defaults; every field can then be overridden (``--help`` lists them with
the preset's values). Invalid values fail at once, before anything compiles, with a message that
names the field as the command line spells it (``ppo.vf_coef``, ``data.num_users``) and the
allowed values.

Every experiment also takes where it runs: ``--devices N`` (the seeds are split across N devices;
default all that the seed count fills evenly) and, for several processes or hosts,
``--coordinator-address HOST:PORT --num-processes P --process-id I`` or ``--distributed`` (the
cluster's environment); :func:`parse` joins the processes (``jax.distributed``) before it checks
the devices.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import jax
import tyro

from vpl_jax.checks import ConfigError, Int, check_config, checked
from vpl_jax.runtime import sharding

C = TypeVar("C", bound="ExperimentConfig")

_RUN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
#: The largest seed: ``jax.random.PRNGKey`` keeps 32 bits (PRNGKey(2**32) is PRNGKey(0)).
MAX_SEED = 2**32 - 1


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    """Fields every experiment has."""

    preset: str = "cpu"
    """Named preset that supplied the defaults (cpu: laptop size; paper: full size, GPU/TPU)."""
    run_name: str = "default"
    """Results go to <results_dir>/<experiment>/<run_name>/."""
    seed: int = checked(0, Int(ge=0, le=MAX_SEED))
    """PRNG seed: the same config and seed give the same numbers on the same device."""
    results_dir: str = "results"
    """Root folder for results."""
    tensorboard: bool = False
    """Also log training curves to <run folder>/tensorboard (needs tensorboardX)."""
    overwrite: bool = False
    """Replace a completed run of the same name (its folder is deleted first). Without it, a
    completed run is never overwritten; an interrupted one resumes from its checkpoints."""
    devices: int | None = checked(None, Int(ge=1, optional=True))
    """Devices the seeds are split across, the same number from every process (default: as
    many of them as the seed count fills evenly; 1: one device)."""
    coordinator_address: str | None = None
    """Several processes or hosts (jax.distributed): process 0's HOST:PORT, with num_processes
    and process_id; start the same command on every process. Process 0 writes the results."""
    num_processes: int | None = checked(None, Int(ge=1, optional=True))
    """Processes of the run (with coordinator_address)."""
    process_id: int | None = checked(None, Int(ge=0, optional=True))
    """This process's index, 0 to num_processes - 1 (with coordinator_address)."""
    distributed: bool = False
    """Join the processes of a cluster job (SLURM, Open MPI, Cloud TPU), reading the address,
    count and index from its environment as jax.distributed.initialize() does."""

    #: Fields holding how many runs train in one vmap (e.g. ``num_seeds``): the devices split
    #: them, so each must divide by --devices.
    SEED_FIELDS = ()

    def validate(self: C) -> C:
        """Checks every field, nested configs' too (:func:`~vpl_jax.checks.check_config`);
        raises :class:`ConfigError` naming the first bad one. An experiment's ``validate``
        calls this first, then checks the rules that relate its fields."""
        if not _RUN_NAME.fullmatch(self.run_name):
            raise ConfigError(
                f"run_name={self.run_name!r}: use letters, digits, '_', '-', '.' "
                "(no slashes or spaces), starting with a letter or digit"
            )
        check_config(self, "")
        check_results_dir(self.results_dir)
        self.check_processes()
        check_devices(self)
        return self

    def check_processes(self) -> None:
        """The multi-process fields agree (all three of the address, count and index, or
        none); they are checked before :func:`parse` joins the processes."""
        given = [self.coordinator_address, self.num_processes, self.process_id]
        if any(v is not None for v in given) and any(v is None for v in given):
            raise ConfigError(
                "coordinator_address, num_processes, process_id: give all three (or none, and "
                "--distributed to read them from the cluster's environment)"
            )
        if self.num_processes is not None:
            Int(ge=0, le=self.num_processes - 1).check("process_id", self.process_id)
            if not re.fullmatch(r"\S+:\d+", self.coordinator_address):
                raise ConfigError(
                    f"coordinator_address={self.coordinator_address!r}: give HOST:PORT of "
                    "process 0 (e.g. 10.0.0.1:1234)"
                )

    @property
    def joins_processes(self) -> bool:
        """Whether this run joins other processes (``jax.distributed``)."""
        return self.distributed or self.coordinator_address is not None

    #: Fields that say where and how a run is recorded or placed, not what it computes: two
    #: configs that differ only here give the same numbers (to float rounding, for the devices),
    #: so checkpoints of one resume the other.
    BOOKKEEPING = (
        "preset",
        "run_name",
        "results_dir",
        "tensorboard",
        "overwrite",
        "devices",
        "coordinator_address",
        "num_processes",
        "process_id",
        "distributed",
    )

    def results_json(self) -> str:
        """The config as JSON without its :attr:`BOOKKEEPING` fields: what a checkpoint's
        fingerprint hashes, so resuming with ``--results-dir ./results`` for ``results`` (or
        with TensorBoard on) is not refused."""
        config = json.loads(self.to_json())
        for name in self.BOOKKEEPING:
            config.pop(name, None)
        return json.dumps(config, sort_keys=True)

    def to_json(self) -> str:
        """The config as JSON; non-finite floats (``beta = inf``) are written as ``null``, as in
        ``metrics.json``, so the file is valid JSON."""
        config = json_safe(dataclasses.asdict(self))
        return json.dumps(config, indent=2, sort_keys=True, default=str, allow_nan=False)


def check_results_dir(results_dir: str) -> None:
    """``results_dir`` names a folder that exists or can be created (not empty, not a file)."""
    if not results_dir.strip():
        raise ConfigError("results_dir='': give a folder (e.g. results)")
    path = Path(results_dir)
    for parent in (path, *path.parents):
        if parent.exists():
            if not parent.is_dir():
                raise ConfigError(f"results_dir={results_dir!r}: {str(parent)!r} is a file")
            if not os.access(parent, os.W_OK | os.X_OK):
                raise ConfigError(f"results_dir={results_dir!r}: {str(parent)!r} is not writable")
            return


def json_safe(value: Any) -> Any:
    """``value`` as JSON can hold it: numpy/jax scalars as Python ones, NaN/inf as None, inside
    dicts, lists and tuples too (what ``config.json`` and ``metrics.json`` write)."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


# --- rules that relate fields --------------------------------------------------------------------
def check_devices(config: ExperimentConfig) -> None:
    """``devices`` is between 1 and the devices of every process (the same number from each),
    and each of the config's :attr:`~ExperimentConfig.SEED_FIELDS` splits evenly across the
    devices and processes; the error says what to change."""
    processes, most = jax.process_count(), sharding.max_devices()
    if config.devices is not None:
        if config.devices > most:
            raise ConfigError(
                f"devices={config.devices}: this run has {most} (jax.devices()"
                + (", the same number from each process" if processes > 1 else "")
                + f"); use 1 to {most}"
            )
        if config.devices % processes:
            raise ConfigError(
                f"devices={config.devices}: must be a multiple of the {processes} processes "
                "(each gives the same number)"
            )
    for name in config.SEED_FIELDS:
        n, flag = getattr(config, name), "--" + name.replace("_", "-")
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            continue  # the experiment's own check names what is wrong
        if n % processes:
            raise ConfigError(
                f"{name}={n} does not split across the {processes} processes: use {flag} "
                f"{-(-n // processes) * processes} (a multiple of {processes})"
            )
        d = config.devices
        if d is not None and n % d:
            fits = [k for k in range(processes, most + 1, processes) if n % k == 0]
            fits = ", ".join(str(k) for k in fits[:-1]) + " or " * (len(fits) > 1) + str(fits[-1])
            raise ConfigError(
                f"{name}={n} does not split evenly across devices={d}: use {flag} "
                f"{-(-n // d) * d} (a multiple of {d}), or --devices {fits} (or leave --devices "
                f"out: {n} {name.removeprefix('num_')} then use "
                f"{sharding.split_size(n, most, processes)} of the {most} devices)"
            )


def check_checkpoint_every(
    config: Any, name: str = "checkpoint_every", chunk: str = "chunk_updates"
):
    """``name`` (0: no checkpoints) is a multiple of ``chunk`` (updates or epochs per jitted
    chunk), so that a resumed run uses the chunk boundaries of an uninterrupted one."""
    every, size = getattr(config, name), getattr(config, chunk)
    if every % size:
        raise ConfigError(f"{name}={every}: must be a multiple of {chunk}={size}")


@dataclasses.dataclass(frozen=True)
class ChunkedPolicies(ExperimentConfig):
    """Fields of every experiment that trains PPO in jitted chunks and can checkpoint it (mix in
    beside :class:`PopulationStudy`; redeclare a field to change its default)."""

    chunk_updates: int = checked(20, Int(ge=1))
    """PPO updates per jitted chunk (the progress bar advances between chunks)."""
    checkpoint_every: int = checked(0, Int(ge=0))
    """Save PPO checkpoints every this many updates (0: none); a multiple of chunk_updates.
    Re-running the same command resumes from the last checkpoint."""

    def validate(self):
        super().validate()
        check_checkpoint_every(self)
        return self


# --- command line ---------------------------------------------------------------------------------
def parse(
    config_cls: type[C],
    presets: Mapping[str, C],
    argv: Sequence[str] | None = None,
    prog: str | None = None,
    description: str | None = None,
) -> C:
    """Parses ``argv`` (default ``sys.argv[1:]``) into a validated config.

    ``--preset NAME`` selects the defaults (default ``cpu``); the other flags override fields.
    An unknown preset or an invalid value exits with status 2 and a message naming the field.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--preset", default="cpu")
    known, _ = pre.parse_known_args(argv)
    if known.preset not in presets:
        _exit(f"preset={known.preset!r}: allowed presets are {sorted(presets)}")
    default = dataclasses.replace(presets[known.preset], preset=known.preset)
    config = tyro.cli(config_cls, default=default, args=argv, prog=prog, description=description)
    try:
        config.check_processes()
        if config.joins_processes:  # before JAX starts: the devices are every process's
            sharding.join_processes(
                config.coordinator_address, config.num_processes, config.process_id
            )
        return config.validate()
    except ValueError as e:  # ConfigError, and library validators (unknown user type, ...)
        _exit(str(e))


def _exit(message: str):
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)
