"""Which comparison a person is asked next: :mod:`vpl_jax.active` on their answers so far.

The candidates are the dataset's query pool (:func:`~vpl_jax.active.candidates`: each unordered
pair once). The person's answers so far are their context — "a" (1), "b" (0) and "about equal"
(0.5) labelled, "can't tell" masked out, as in a dataset — and
:func:`~vpl_jax.active.select_queries` picks the best candidate not yet asked:

* ``info_gain`` — the information the answer carries about the person's latent under the trained
  model (VPL's z; for LinearBayes the same quantity over theta, ``mutual_info_theta``);
* ``random`` — a uniformly random unasked pair (the control, and the only choice without a
  model).

The context is a buffer of a power-of-two number of slots (at least 8), so the jitted selection
compiles a handful of times over a session, not once per answer. Round n of a person uses the key
``fold_in(fold_in(PRNGKey(seed), crc32(person)), n)``, so a resumed session asks what it would have.
"""

from __future__ import annotations

import zlib

import jax
import jax.numpy as jnp
import numpy as np

from vpl_jax.active import Acquisition, Candidates, candidates, make_belief, select_queries
from vpl_jax.data.dataset import PreferenceDataset
from vpl_jax.rewards import LinearBayes, PairBatch
from vpl_jax.rewards.base import Params

#: The query choices the app offers (``--queries``).
QUERY_CHOICES = ("info_gain", "random")

_select = jax.jit(select_queries, static_argnums=(0, 1))


def _slots(n: int) -> int:
    """Context slots for n answers plus the next one: a power of two, at least 8."""
    return max(8, 1 << n.bit_length())


class QueryChooser:
    """Chooses each person's next pair from ``dataset``'s pool, never one already asked.

    Args:
      dataset: the dataset whose pool and segments are asked about.
      model, params: a trained VPL or LinearBayes and its params (one seed), or None.
      queries: ``"info_gain"`` or ``"random"``; None: info_gain with a model, else random.
      seed: the base of every selection's PRNG key.
      num_samples: posterior samples of the latent that info_gain averages over.
    """

    def __init__(
        self,
        dataset: PreferenceDataset,
        model=None,
        params: Params | None = None,
        queries: str | None = None,
        seed: int = 0,
        num_samples: int = 64,
    ):
        queries = queries or ("info_gain" if model is not None else "random")
        if queries not in QUERY_CHOICES:
            raise ValueError(f"queries={queries!r}: must be one of {list(QUERY_CHOICES)}")
        if queries == "info_gain" and model is None:
            raise ValueError("queries='info_gain' needs a trained model (--model)")
        self.queries = queries
        self.model, self.params = model, params
        self.belief = None if model is None else make_belief(model, num_samples)
        criterion = "random" if queries == "random" else "info_gain"
        if criterion == "info_gain" and isinstance(model, LinearBayes):
            criterion = "mutual_info_theta"  # the same quantity, over theta
        self.acquisition = Acquisition(criterion).validate(self.belief)
        self.candidates: Candidates = candidates(
            dataset, "features" if model is None else model.inputs
        )
        ids = np.asarray(self.candidates.segment_ids)
        #: i64[Q, 2] each candidate as dataset segment indices.
        self.pairs = ids[np.asarray(self.candidates.pairs)]
        self._index = {tuple(sorted(map(int, p))): q for q, p in enumerate(self.pairs)}
        self.seed = seed

    def candidate_of(self, pair) -> int:
        """The candidate index of a pair of dataset segment indices (either order)."""
        key = tuple(sorted(map(int, pair)))
        if key not in self._index:
            raise ValueError(f"pair {list(pair)} is not in the dataset's query pool")
        return self._index[key]

    def key(self, person: str, n: int) -> jax.Array:
        """The PRNG key of ``person``'s selection after ``n`` answers."""
        base = jax.random.fold_in(jax.random.PRNGKey(self.seed), zlib.crc32(person.encode()))
        return jax.random.fold_in(base, n)

    def context(self, answers: list[dict]) -> tuple[PairBatch, jax.Array, jax.Array]:
        """``(context: PairBatch[K], slot, available: bool[Q])`` of a person's ``answers`` (each
        ``{"pair": [a, b], "label": 1 | 0 | 0.5 | None}``): the answers in the first slots, the
        first free slot, and the candidates not yet asked."""
        n, k = len(answers), _slots(len(answers))
        index = np.zeros(k, np.int32)
        labels = np.zeros(k, np.float32)
        mask = np.zeros(k, bool)
        available = np.ones(self.candidates.num_candidates, bool)
        for i, a in enumerate(answers):
            q = self.candidate_of(a["pair"])
            index[i], available[q] = q, False
            labels[i] = 0.5 if a["label"] is None else a["label"]
            mask[i] = a["label"] is not None
        context = self.candidates.batch(jnp.asarray(index), jnp.asarray(labels), jnp.asarray(mask))
        return context, jnp.int32(n), jnp.asarray(available)

    def next_pair(self, person: str, answers: list[dict]) -> list[int] | None:
        """The next pair ``[a, b]`` (dataset segment indices) to ask ``person``; None once every
        candidate has been asked."""
        context, slot, available = self.context(answers)
        if not bool(jnp.any(available)):
            return None
        picked = _select(
            self.belief,
            self.acquisition,
            self.params,
            self.candidates,
            context,
            slot,
            available,
            self.key(person, len(answers)),
        )
        return [int(x) for x in self.pairs[int(picked[0])]]
