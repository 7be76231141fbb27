"""Host-side progress bars for long runs, updated *between* jitted chunks.

Training loops run a fixed number of updates per jitted call (a chunk); the host advances the bar
after each call, so there is no host round-trip inside compiled code. ``VPL_JAX_PROGRESS=0``
silences the bars (e.g. in CI logs).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from tqdm.auto import tqdm


def enabled() -> bool:
    return os.environ.get("VPL_JAX_PROGRESS", "1") != "0"


def progress(total: int, desc: str, unit: str = "it") -> tqdm:
    """A tqdm bar with rate and ETA (a context manager; call ``.update(n)``)."""
    return tqdm(total=total, desc=desc, unit=unit, disable=not enabled(), dynamic_ncols=True)


def chunks(total: int, chunk: int) -> Iterator[int]:
    """Sizes of consecutive chunks covering ``total`` (all ``chunk`` but a shorter last one)."""
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    done = 0
    while done < total:
        n = min(chunk, total - done)
        yield n
        done += n
