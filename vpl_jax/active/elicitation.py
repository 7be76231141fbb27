"""Scoring a candidate pool for one user, choosing the next queries, and the elicitation loop.

**Criteria** (:data:`CRITERIA`, by the names results record), all computed from a belief's particles
(:mod:`vpl_jax.active.beliefs`), higher is better:

* ``info_gain`` — ``I(y; z | C, q) = H[E_z p(y|z,q)] - E_z H[p(y|z,q)]`` with z sampled from
  q(z | C) (VPL; for an ensemble, the information about which member is right);
* ``mutual_info_theta`` — the same quantity over LinearBayes' theta samples;
* ``entropy`` — expected reduction of the posterior's entropy by the answer,
  ``H[q(z|C)] - sum_y p(y|C,q) H[q(z | C ∪ {(q, y)})]`` over ``y ∈ {0, 1}``, re-encoding the
  context with the candidate answered each way (latent models). For an exact Bayesian posterior
  this equals the information gain; for VPL's amortised encoder it measures what the encoder
  would actually do with the answer;
* ``volume_removal`` — ``1 - max(E p, 1 - E p)`` (Sadigh et al., 2017);
* ``disagreement`` — the particles' weighted variance of ``p`` (query-by-committee; the BTL
  ensemble's criterion);
* ``random`` — uniform scores: the control.

**Selection**: the best still-available candidate, or a batch of b that are not near-duplicates
(:func:`~vpl_jax.active.acquisition.select_batch`, with each candidate embedded by its logits
under the N particles — two candidates that every particle judges alike are redundant).

**The loop** (:func:`elicit`) for one user: the context is a fixed buffer of R·b slots with a
mask, empty at first (so the first posterior is the prior); each of R rounds records the held-out
accuracy (without a held-out set: NaN), the belief's spread and (LinearBayes) the alignment with
the true theta, scores the pool, picks b unasked candidates, asks the simulated user (their human
model, :func:`~vpl_jax.users.pair_label_distribution` and :func:`~vpl_jax.users.sample_label`) and
writes the answers into the buffer. The R rounds are one ``lax.scan``; :func:`elicit_users` runs
it for every user × seed under one ``jit`` (a ``vmap`` in chunks of users, to bound memory), and
:func:`elicit_test_users` for a dataset's test users, with its query pool and held-out pairs.

Randomness: round t uses ``fold_in(key, t)``, split into a key for the particles/random scores
and one for the user's answers.

Axes: S seeds, U users, Q candidates, N particles, R rounds, b queries per round, M held-out.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import TYPE_CHECKING

import chex
import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from vpl_jax.active.acquisition import (
    binary_entropy,
    disagreement,
    information_gain,
    random_scores,
    select_batch,
    volume_removal,
)
from vpl_jax.active.beliefs import (
    Belief,
    Candidates,
    EnsembleBelief,
    LatentBelief,
    candidates,
    excluded_candidates,
    make_belief,
    particle_probs,
)
from vpl_jax.checks import Choice, ConfigError, Float, Int, check_config, checked
from vpl_jax.rewards import PairBatch, cosine, user_pairs
from vpl_jax.rewards.base import Params
from vpl_jax.rewards.likelihood import strict_accuracy
from vpl_jax.users import User, check_partial_return, pair_label_distribution, sample_label

if TYPE_CHECKING:
    from vpl_jax.data import PreferenceDataset
    from vpl_jax.rewards import RewardModel

#: Active query-selection criteria, by the names results record (see the module docstring).
CRITERIA = (
    "info_gain",
    "random",
    "entropy",
    "disagreement",
    "mutual_info_theta",
    "volume_removal",
)


def criteria_for(belief: Belief) -> tuple[str, ...]:
    """The criteria that apply to ``belief``'s model."""
    common = ("random", "disagreement", "volume_removal")
    if isinstance(belief, EnsembleBelief):
        return ("info_gain", *common)
    if belief.latent_is_theta:
        return ("mutual_info_theta", "entropy", *common)
    return ("info_gain", "entropy", *common)


@dataclasses.dataclass(frozen=True)
class Acquisition:
    """How the next queries are chosen (hashable: a static argument under ``jit``).

    Attributes:
      criterion: one of :data:`CRITERIA` (see the module docstring).
      batch_size: b, queries asked per round.
      diversity: weight of the near-duplicate penalty when b > 1 (scores are min-max
        normalised first, so it means the same for every criterion).
      shortlist: ``entropy`` only: re-encode just the L available candidates with the highest
        predictive entropy ``H[E_z p]`` (None: all of them). The answer's information about z
        is at most ``H[y]``, so the others cannot gain much, and re-encoding the context twice
        per candidate is by far the most expensive criterion.
      candidates_per_chunk: ``entropy`` only: candidates re-encoded at once (bounds memory).
        Keep it small for LinearBayes on CPU: under ``vmap`` its Laplace posterior becomes a
        batched LAPACK call of (users at once × this) matrices, which jaxlib splits across
        the intra-op thread pool once the batch is large (about 1000 7×7 factorisations),
        and that nested wait on the pool has been seen to deadlock on a 2-core machine
        (jax 0.10.2).
    """

    criterion: str = checked("info_gain", Choice(CRITERIA))
    batch_size: int = checked(1, Int(ge=1))
    diversity: float = checked(1.0, Float(ge=0))
    shortlist: int | None = checked(None, Int(ge=1, optional=True))
    candidates_per_chunk: int | None = checked(16, Int(ge=1, optional=True))

    def validate(self, belief: Belief | None = None) -> Acquisition:
        """Raises :class:`~vpl_jax.checks.ConfigError` naming the bad field and the allowed
        values (with ``belief``, the criteria its model supports)."""
        check_config(self)
        if belief is not None and self.criterion not in criteria_for(belief):
            raise ConfigError(
                f"Acquisition.criterion={self.criterion!r}: allowed values for "
                f"{type(belief.model).__name__} are {list(criteria_for(belief))}"
            )
        if self.shortlist is not None and self.shortlist < self.batch_size:
            raise ConfigError(
                f"Acquisition.shortlist={self.shortlist}: must be >= batch_size={self.batch_size}"
            )
        return self


# --- scoring one user's pool ---------------------------------------------------------------------
def with_pair(context: PairBatch, slot: jax.Array, pair: PairBatch) -> PairBatch:
    """``context: PairBatch[K]`` with slot ``slot`` replaced by the single (unbatched) pair
    ``pair``, labelled."""
    return jax.tree.map(lambda c, p: c.at[slot].set(p), context, pair.replace(mask=jnp.array(True)))


def expected_entropy_reduction(
    model,
    params: Params,
    context: PairBatch,
    slot: jax.Array,
    cands: Candidates,
    index: jax.Array,
    p_answer: jax.Array,
    candidates_per_chunk: int | None = 16,
) -> jax.Array:
    """f32[L]: ``H[q(z|C)] - E_y H[q(z | C ∪ {(q, y)})]`` for the candidates ``index: i32[L]``.

    Args:
      model: a latent model (``posterior(params, context)`` with an ``entropy``).
      context: the user's ``PairBatch[K]``; slot ``slot`` (free) receives the candidate.
      p_answer: f32[L], the predictive ``P(y = 1 | C, q)`` the expectation over y uses.
      candidates_per_chunk: candidates re-encoded at once (bounds memory; None: all).
    """
    now = model.posterior(params, context).entropy()

    def after(args):
        q, p = args

        def entropy_if(y):
            pair = jax.tree.map(lambda x: x[0], cands.batch(q[None], y[None], jnp.ones(1, bool)))
            return model.posterior(params, with_pair(context, slot, pair)).entropy()

        return now - (p * entropy_if(jnp.float32(1.0)) + (1.0 - p) * entropy_if(jnp.float32(0.0)))

    return jax.lax.map(after, (index, p_answer), batch_size=candidates_per_chunk)


def _entropy_scores(acq, belief, params, context, slot, cands, available, p_answer):
    """f32[Q]: expected entropy reduction; -inf outside the shortlist (and where unavailable)."""
    q = cands.num_candidates
    if acq.shortlist is None or acq.shortlist >= q:
        index = jnp.arange(q)
    else:
        predictive = jnp.where(available, binary_entropy(p_answer), -jnp.inf)
        index = jax.lax.top_k(predictive, acq.shortlist)[1]
    reduction = expected_entropy_reduction(
        belief.model,
        params,
        context,
        slot,
        cands,
        index,
        p_answer[index],
        acq.candidates_per_chunk,
    )
    return jnp.full(q, -jnp.inf).at[index].set(reduction)


def score_candidates(
    belief: Belief,
    acq: Acquisition,
    params: Params,
    cands: Candidates,
    context: PairBatch,
    slot: jax.Array,
    available: jax.Array,
    key: jax.Array,
) -> tuple[jax.Array, jax.Array]:
    """``(scores: f32[Q], embeddings: f32[Q, N])`` of every candidate for one user.

    ``context: PairBatch[K]`` holds the user's answers so far and ``slot`` is its first free
    slot, ``available: bool[Q]`` the candidates not yet asked (``entropy`` uses both). The
    embeddings are the candidates' logits under the N particles.
    """
    chex.assert_rank(context.labels, 1)
    chex.assert_shape(available, (cands.num_candidates,))
    p, logits, w = particle_probs(belief, params, context, cands, key)
    criterion = acq.criterion
    if criterion in ("info_gain", "mutual_info_theta"):
        scores = information_gain(p, w)
    elif criterion == "volume_removal":
        scores = volume_removal(p, w)
    elif criterion == "disagreement":
        scores = disagreement(p, w)
    elif criterion == "random":
        scores = random_scores(key, cands.num_candidates)
    elif criterion == "entropy":
        scores = _entropy_scores(acq, belief, params, context, slot, cands, available, w @ p)
    else:
        raise ValueError(f"criterion={criterion!r}: allowed values are {list(CRITERIA)}")
    return scores, logits.T


def _min_max(scores: jax.Array, valid: jax.Array) -> jax.Array:
    """Scores rescaled to [0, 1] over the valid candidates (so that the diversity weight means
    the same for every criterion)."""
    low = jnp.min(jnp.where(valid, scores, jnp.inf))
    high = jnp.max(jnp.where(valid, scores, -jnp.inf))
    return jnp.where(valid, (scores - low) / jnp.maximum(high - low, 1e-12), 0.0)


def select_queries(
    belief: Belief,
    acq: Acquisition,
    params: Params,
    cands: Candidates,
    context: PairBatch,
    slot: jax.Array,
    available: jax.Array,
    key: jax.Array,
) -> jax.Array:
    """i32[b]: the next ``acq.batch_size`` candidates to ask one user (one selection round).

    ``available: bool[Q]`` excludes candidates already asked. ``random`` is a uniformly random
    subset of the available candidates (the control never looks at the model, so with the same
    key every model is asked the same queries); every other criterion with b > 1 picks greedily
    by normalised score minus ``diversity`` times the largest similarity to the candidates
    already picked.
    """
    if acq.criterion == "random":
        scores = random_scores(key, cands.num_candidates)
        return jax.lax.top_k(jnp.where(available, scores, -1.0), acq.batch_size)[1]
    scores, embeddings = score_candidates(belief, acq, params, cands, context, slot, available, key)
    valid = available & jnp.isfinite(scores)
    if acq.batch_size == 1:
        return jnp.argmax(jnp.where(valid, scores, -jnp.inf))[None]
    return select_batch(_min_max(scores, valid), embeddings, acq.batch_size, acq.diversity, valid)


# --- the elicitation loop ------------------------------------------------------------------------
@struct.dataclass
class Trace:
    """What eliciting one user recorded (leading axes [S, U] from :func:`elicit_users`).

    Per-round fields have R + 1 entries: after 0, b, 2b, …, R·b queries.

    Attributes:
      accuracy: f32[R+1] held-out accuracy (strict labels; NaN if the user has none, or
        without a held-out set).
      spread: f32[R+1] the belief's uncertainty (posterior variance averaged over latent dims;
        the ensemble's member variance of ``P(a ≻ b)`` on the held-out pairs, NaN without them).
      alignment: f32[R+1] cosine of the posterior mean with the true theta (LinearBayes; NaN
        for the other models).
      heldout_probs: f32[R+1, M] the predicted ``P(a ≻ b)`` of each held-out pair; None
        without a held-out set.
      latent_mean: f32[R+1, Z] the posterior mean of the user's latent (VPL's z, LinearBayes'
        theta) — what a latent-conditioned policy would act on; None for an ensemble (no
        user latent).
      queries: i32[R·b] the candidates asked, in order.
      labels: f32[R·b] the answers; answered: bool[R·b] False where the user skipped.
    """

    accuracy: jax.Array
    spread: jax.Array
    alignment: jax.Array
    heldout_probs: jax.Array
    latent_mean: jax.Array | None
    queries: jax.Array
    labels: jax.Array
    answered: jax.Array


def heldout_accuracy(logits: jax.Array, targets: PairBatch) -> jax.Array:
    """f32[]: share of the strict (y != 0.5) labelled targets predicted right; NaN if none."""
    return strict_accuracy(logits, targets.labels, targets.mask, empty=jnp.nan)


def _measure(
    belief: Belief, params, context: PairBatch, heldout: PairBatch | None, theta: jax.Array
):
    latent = isinstance(belief, LatentBelief)
    mean = belief.mean(params, context) if latent else None
    alignment = cosine(mean, theta) if belief.latent_is_theta else jnp.float32(jnp.nan)
    if heldout is None:  # a latent model's spread needs no targets; the ensemble's does
        spread = belief.spread(params, context, None) if latent else jnp.float32(jnp.nan)
        return jnp.float32(jnp.nan), spread, alignment, None, mean
    logits = belief.predict(params, context, heldout)
    spread = belief.spread(params, context, heldout)
    return heldout_accuracy(logits, heldout), spread, alignment, jax.nn.sigmoid(logits), mean


def ask(key: jax.Array, user: User, cands: Candidates, index: jax.Array):
    """``(labels: f32[b], answered: bool[b])``: the simulated user's answers to candidates
    ``index: i32[b]``, drawn with their human model from the segments' true features."""
    pairs = cands.pairs[index]
    feats_a, feats_b = cands.features[pairs[:, 0]], cands.features[pairs[:, 1]]

    def one(k, fa, fb):
        return sample_label(k, pair_label_distribution(user, fa, fb))

    return jax.vmap(one)(jax.random.split(key, index.shape[0]), feats_a, feats_b)


def elicit(
    belief: Belief,
    acq: Acquisition,
    params: Params,
    cands: Candidates,
    user: User,
    heldout: PairBatch | None,
    key: jax.Array,
    num_rounds: int,
    excluded: jax.Array | None = None,
) -> Trace:
    """Elicits one user's preferences over ``num_rounds`` rounds of ``acq.batch_size`` queries.

    Pure and jittable (one ``lax.scan``); batch over users and seeds with ``vmap``.

    Args:
      belief, acq: the model's belief adapter and how queries are chosen (static).
      params: the trained model's params (one seed).
      cands: the candidate pool (the model's inputs and the task features).
      user: the unbatched simulated user (true ``theta: f32[F]`` and human model).
      heldout: ``PairBatch[M]``, the user's held-out pairs with their labels; None: no
        held-out accuracy (NaN) — e.g. only the alignment with the true theta is wanted.
      key: PRNG key of this user's run.
      num_rounds: R (static); needs ``R·b`` askable candidates.
      excluded: ``bool[Q]`` candidates never to ask this user — their held-out pairs, which
        would otherwise be answered and then scored (:func:`excluded_for_users`).
    """
    chex.assert_rank(user.theta, 1)
    if heldout is not None:
        chex.assert_rank(heldout.labels, 1)
    chex.assert_shape(cands.pairs, (None, 2))
    b = acq.batch_size
    num_slots = num_rounds * b
    empty = (
        jnp.zeros(num_slots, jnp.int32),
        jnp.zeros(num_slots, jnp.float32),
        jnp.zeros(num_slots, bool),
    )

    def round_(carry, t):
        (queries, labels, answered), available = carry
        k_score, k_answer = jax.random.split(jax.random.fold_in(key, t))
        context = cands.batch(queries, labels, answered)
        metrics = _measure(belief, params, context, heldout, user.theta)
        slot = t * b
        picked = select_queries(belief, acq, params, cands, context, slot, available, k_score)
        y, ok = ask(k_answer, user, cands, picked)
        slots = slot + jnp.arange(b)
        buffer = (
            queries.at[slots].set(picked),
            labels.at[slots].set(y),
            answered.at[slots].set(ok),
        )
        return (buffer, available.at[picked].set(False)), metrics

    available = jnp.ones(cands.num_candidates, bool) if excluded is None else ~excluded
    (buffer, _), per_round = jax.lax.scan(round_, (empty, available), jnp.arange(num_rounds))
    final = _measure(belief, params, cands.batch(*buffer), heldout, user.theta)
    accuracy, spread, alignment, probs, mean = jax.tree.map(
        lambda xs, x: jnp.concatenate([xs, x[None]]), per_round, final
    )
    return Trace(
        accuracy=accuracy,
        spread=spread,
        alignment=alignment,
        heldout_probs=probs,
        latent_mean=mean,
        queries=buffer[0],
        labels=buffer[1],
        answered=buffer[2],
    )


# --- every user and seed at once ----------------------------------------------------------------
def check_elicitation_inputs(
    belief: Belief,
    acq: Acquisition,
    params: Params,
    cands: Candidates,
    users: User,
    heldout: PairBatch | None,
    num_rounds: int,
    seeds: bool,
) -> None:
    """Raises ``ValueError`` naming the bad argument (before anything compiles)."""
    acq.validate(belief)
    if isinstance(num_rounds, bool) or not isinstance(num_rounds, int) or num_rounds < 1:
        raise ValueError(f"num_rounds={num_rounds!r}: must be an integer >= 1")
    q = cands.num_candidates
    if num_rounds * acq.batch_size > q:
        raise ValueError(
            f"num_rounds * batch_size = {num_rounds * acq.batch_size} queries exceeds the pool "
            f"of Q = {q} candidates"
        )
    num_users = users.theta.shape[0]
    check_partial_return(users.human, "elicitation")
    if cands.bank.kind != belief.model.inputs:
        raise ValueError(
            f"candidates hold inputs of kind {cands.bank.kind!r} but the model consumes "
            f"{belief.model.inputs!r}; build them with candidates(dataset, {belief.model.inputs!r})"
        )
    if heldout is not None and (heldout.labels.ndim != 2 or heldout.labels.shape[0] != num_users):
        raise ValueError(
            f"heldout must be PairBatch[U, M] for the U = {num_users} users, got labels of "
            f"shape {heldout.labels.shape}"
        )
    if users.theta.shape[-1] != cands.features.shape[-1]:
        raise ValueError(
            f"users' theta has {users.theta.shape[-1]} weights but the candidates' segments "
            f"have {cands.features.shape[-1]} features"
        )
    one = jax.tree.map(lambda x: x[0], params) if seeds else params

    def predict(p):
        context = cands.batch(jnp.zeros(1, jnp.int32), jnp.zeros(1), jnp.ones(1, bool))
        targets = context if heldout is None else jax.tree.map(lambda x: x[0], heldout)
        return belief.predict(p, context, targets)

    try:
        jax.eval_shape(predict, one)
    except (TypeError, ValueError, IndexError) as e:
        raise ValueError(
            f"the candidates' and held-out inputs do not fit the params of this "
            f"{type(belief.model).__name__} (trained on data of another shape?): {e}"
        ) from e


def excluded_for_users(cands: Candidates, exclude, num_users: int, num_queries: int):
    """``bool[U, Q]``: the candidates each user must not be asked — those among their pairs
    ``exclude: i32[U, M', 2]`` (dataset segment indices, either order).

    Raises ``ValueError`` if the candidates do not record their dataset segments, ``exclude``
    is malformed, or a user keeps fewer than ``num_queries`` askable candidates.
    """
    if cands.segment_ids is None:
        raise ValueError(
            "exclude needs candidates that record their dataset segment indices: build them "
            "with active.candidates(dataset, inputs)"
        )
    shape, dtype = np.shape(exclude), np.asarray(exclude).dtype
    if len(shape) != 3 or shape[0] != num_users or shape[2] != 2:
        raise ValueError(
            f"exclude must be i32[U, M, 2] pairs for the U = {num_users} users, got shape {shape}"
        )
    if not np.issubdtype(dtype, np.integer):
        raise ValueError(f"exclude must hold integer segment indices, got dtype {dtype}")
    pairs = jnp.asarray(exclude, jnp.int32)
    excluded = jax.vmap(excluded_candidates, in_axes=(None, 0))(cands, pairs)
    fewest = cands.num_candidates - int(jnp.max(jnp.sum(excluded, axis=-1)))
    if fewest < num_queries:
        raise ValueError(
            f"after excluding the users' pairs, a user has {fewest} candidates left, fewer than "
            f"the {num_queries} queries (num_rounds * batch_size) to ask"
        )
    return excluded


@functools.partial(
    jax.jit, static_argnames=("belief", "acq", "num_rounds", "seeds", "users_per_chunk")
)
def _elicit_users(
    belief, acq, params, cands, users, heldout, key, num_rounds, seeds, users_per_chunk, excluded
):
    num_users = users.theta.shape[0]
    num_seeds = jax.tree.leaves(params)[0].shape[0] if seeds else 1
    # One flat axis over (seed, user): chunks of users then bound memory whatever S is.
    seed_of = jnp.repeat(jnp.arange(num_seeds), num_users)
    user_of = jnp.tile(jnp.arange(num_users), num_seeds)
    keys = jax.random.split(key, num_seeds * num_users)

    def one(args):
        s, u, k = args
        p = jax.tree.map(lambda x: x[s], params) if seeds else params
        take = functools.partial(jax.tree.map, lambda x: x[u])
        return elicit(
            belief, acq, p, cands, take(users), take(heldout), k, num_rounds, take(excluded)
        )

    trace = jax.lax.map(one, (seed_of, user_of, keys), batch_size=users_per_chunk)
    shape = (num_seeds, num_users) if seeds else (num_users,)
    return jax.tree.map(lambda x: x.reshape(*shape, *x.shape[1:]), trace)


def elicit_users(
    belief: Belief,
    acq: Acquisition | str,
    params: Params,
    cands: Candidates,
    users: User,
    heldout: PairBatch | None,
    key: jax.Array,
    *,
    num_rounds: int,
    seeds: bool = False,
    users_per_chunk: int | None = 16,
    exclude: jax.Array | None = None,
) -> Trace:
    """Runs :func:`elicit` for every user (and every seed of ``params``) under one ``jit``.

    Args:
      belief: the model's belief adapter (:func:`~vpl_jax.active.beliefs.make_belief`).
      acq: an :class:`Acquisition`, or just a criterion's name (one query per round).
      params: trained params; with a leading seed axis S if ``seeds``.
      cands: the candidate pool (:func:`~vpl_jax.active.beliefs.candidates`).
      users: batched users (leading axis U on ``theta``), e.g. ``test.users`` of a dataset or
        :func:`~vpl_jax.active.features.users_from_theta`; scalar human-model fields are shared
        by every user (:meth:`~vpl_jax.users.HumanModel.broadcast`).
      heldout: ``PairBatch[U, M]``, e.g. ``user_pairs(test, "heldout", model.inputs).batch()``;
        None: no held-out set — ``accuracy`` is NaN and ``heldout_probs`` None, while the spread
        and (LinearBayes) the alignment with the users' true theta are still recorded.
      key: PRNG key; every (seed, user) gets its own.
      num_rounds: R rounds of ``acq.batch_size`` queries.
      users_per_chunk: (seed, user) runs vmapped at once (bounds memory; None: all at once).
      exclude: ``i32[U, M', 2]`` pairs (dataset segment indices) never to ask each user, in
        either order: pass the users' held-out pairs (``test.heldout.pairs``) whenever the held-out
        pairs come from the candidate pool, or an answered query is then scored as held-out.

    Returns:
      a :class:`Trace` with leading axes [S, U] (``seeds``) or [U].
    """
    acq = Acquisition(acq) if isinstance(acq, str) else acq
    if np.ndim(users.theta) != 2:
        raise ValueError(f"users.theta must be f32[U, F], got shape {np.shape(users.theta)}")
    users = users.replace(human=users.human.broadcast(users.theta.shape[0]))
    check_elicitation_inputs(belief, acq, params, cands, users, heldout, num_rounds, seeds)
    excluded = None
    if exclude is not None:
        num_queries = num_rounds * acq.batch_size
        excluded = excluded_for_users(cands, exclude, users.theta.shape[0], num_queries)
    return _elicit_users(
        belief,
        acq,
        params,
        cands,
        users,
        heldout,
        key,
        num_rounds,
        seeds,
        users_per_chunk,
        excluded,
    )


def elicit_test_users(
    dataset: PreferenceDataset,
    model: RewardModel,
    params: Params,
    acq: Acquisition | str,
    key: jax.Array,
    *,
    num_rounds: int,
    num_samples: int = 32,
    users_per_chunk: int | None = 16,
) -> Trace:
    """Elicits every test user of ``dataset`` from an empty context, each of S seeds of
    ``params`` (a leading axis S, e.g. from :func:`vpl_jax.pipeline.train_reward` with S keys):
    :func:`elicit_users` with ``model``'s belief (``num_samples`` particles), the dataset's
    query pool (:func:`~vpl_jax.active.beliefs.candidates`) and the test users' held-out pairs,
    which are never asked (an answered query would then be scored as held-out).

    Returns:
      a :class:`Trace` with leading axes [S, U] (U: the dataset's test users).
    """
    _, test = dataset.split()
    return elicit_users(
        make_belief(model, num_samples),
        acq,
        params,
        candidates(dataset, model.inputs),
        test.users,
        user_pairs(test, "heldout", model.inputs).batch(),
        key,
        num_rounds=num_rounds,
        seeds=True,
        users_per_chunk=users_per_chunk,
        exclude=test.heldout.pairs,
    )
