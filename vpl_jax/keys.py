"""PRNG keys named by strings, shared by every package (a leaf: imports nothing of the project).

A run that draws one key per method or criterion should not draw it by position
(``split(key, len(names))`` or ``fold_in(key, names.index(name))``): reordering a tuple, or
running a subset of it, would then change every result. :func:`named_key` folds in a stable
hash of the name instead, the same in every process and Python version (unlike ``hash``).
"""

from __future__ import annotations

import zlib

import jax


def name_hash(name: str) -> int:
    """A stable 31-bit hash of ``name``: the CRC-32 of its UTF-8 bytes, masked to 31 bits (a
    non-negative int32, which ``jax.random.fold_in`` takes on every platform)."""
    return zlib.crc32(name.encode()) & 0x7FFFFFFF


def named_key(key: jax.Array, name: str) -> jax.Array:
    """``fold_in(key, name_hash(name))``: the key of ``name``, whatever other names exist."""
    return jax.random.fold_in(key, name_hash(name))
