"""The iterate loop: preference learning from the current policy's own rollouts.

A reward learned from data that covers only part of the state space can fit its held-out pairs
and still be wrong where a policy optimised on it goes (reward *misidentification*). The remedy
used in practice is online: PEBBLE (Lee et al., 2021) and preference comparisons (Christiano et
al., 2017; imitation's ``PreferenceComparisons``) alternate between the agent and the labellers.
:func:`iterate` does that, round by round:

0. round 0 is the offline pipeline (:func:`vpl_jax.pipeline.offline`) on the given dataset —
   reward, then PPO, then the test users' true returns;
1. roll out the round's policy (stochastic actions; a latent policy conditioned on the training
   users' posterior means) and add its segments to the segment bank;
2. score the reward on those segments (:attr:`RoundResult.onpolicy_accuracy`: the test users'
   rational answers about pairs of a new segment and any segment — accuracy where the policy
   goes, next to the held-out accuracy on the original data);
3. offer every user ``offered_per_user`` random pairs (a new segment against any segment) and
   ask them the ``schedule[r]`` best by the criterion — ``random``, or ``info_gain``: the mutual
   information between the answer and what the model believes about the user (BALD over VPL
   posterior samples of ``z``, or over a BTL ensemble's members weighted by the user's answers:
   :mod:`vpl_jax.active`'s beliefs and :func:`~vpl_jax.active.acquisition.information_gain`);
4. label them with each user's own human model, append them to the users' context, and run the
   pipeline again — reward from scratch on all the data so far, PPO from scratch on it.

Training users' new answers train the reward; test users' new answers join their context (what
they tell the model about themselves). Held-out pairs stay the original ones.

Shapes: from round 1 on, the segment bank and the users' context are padded to the loop's final
size (masked pairs, unused segments), so every later round reuses one compiled reward trainer,
evaluation and PPO; round 0 runs on the dataset as given, so it *is* the offline pipeline.
Round r's pipeline runs with :func:`round_key` ``(key, r)``; the loop's own draws (rollouts,
offers, labels) use a separate stream.

Seeds: S keys (:func:`seed_keys`) run S loops at once. The data are one dataset; each seed's
rounds diverge (its own reward, policy, new segments and answers), so the loop's state carries a
leading seed axis S (S segment banks and contexts of one padded shape), every reward fit trains
the S seeds in one ``vmap`` (each on its own data), PPO the S runs in one ``vmap``, and the
rollouts, offers, picks and labels are ``vmap``-ed over the seeds. Seed s equals the loop run
alone with ``key[s]`` (to float rounding); one seed (S = 1) runs without ``vmap``, exactly as a
single key.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from vpl_jax import policies as P
from vpl_jax import rewards as R
from vpl_jax.active.acquisition import information_gain
from vpl_jax.active.beliefs import has_belief, make_belief
from vpl_jax.checks import Choice, ConfigError, Each, Int, check_config, checked
from vpl_jax.data.dataset import PreferenceDataset, Queries, label_queries
from vpl_jax.data.segments import Segments
from vpl_jax.keys import named_key
from vpl_jax.pipeline import (
    PipelineResult,
    PolicyTrainer,
    RewardFit,
    check_trainer,
    is_unconditioned,
    offline,
    policy_inputs,
    policy_method,
    reference_states,
    test_latents,
)
from vpl_jax.rewards.batch import untyped
from vpl_jax.rewards.evaluation import evaluation_metrics
from vpl_jax.rewards.trainer import as_raw_keys, check_converged, check_training_inputs
from vpl_jax.runtime import sharding
from vpl_jax.runtime.checkpoint import Checkpointer
from vpl_jax.users import check_partial_return

#: The criteria of :data:`vpl_jax.active.CRITERIA` the loop implements.
LOOP_CRITERIA = ("random", "info_gain")


@dataclasses.dataclass(frozen=True)
class IterateConfig:
    """The iterate loop's schedule and sizes.

    Attributes:
      schedule: new queries per user in each round after round 0; its length is the number of
        rounds (``()`` runs round 0 only, the offline pipeline).
      criterion: ``random`` or ``info_gain`` (needs a model with a belief: VPL or a BTL
        ensemble).
      episodes_per_round: policy rollouts added to the segment bank after each round.
      offered_per_user: candidate pairs offered to each user per round; the criterion picks
        ``schedule[r]`` of them.
      num_samples: posterior samples of ``z`` per user for information gain (VPL).
      onpolicy_pairs: pairs per test user for the on-policy accuracy.
      num_eval_episodes: evaluation episodes per test user (deterministic policy).
    """

    schedule: tuple[int, ...] = checked((8, 8, 8), Each(Int(ge=1)))
    criterion: str = checked("random", Choice(LOOP_CRITERIA))
    episodes_per_round: int = checked(32, Int(ge=1))
    offered_per_user: int = checked(64, Int(ge=1))
    num_samples: int = checked(16, Int(ge=1))
    onpolicy_pairs: int = checked(32, Int(ge=1))
    num_eval_episodes: int = checked(8, Int(ge=1))

    def validate(
        self, model: R.RewardModel | None = None, name: str = "IterateConfig"
    ) -> IterateConfig:
        """Raises :class:`~vpl_jax.checks.ConfigError` naming the first bad field (as
        ``name.field``) and the allowed values; with ``model``, also whether its criterion can
        run on it."""
        check_config(self, name)
        if any(n > self.offered_per_user for n in self.schedule):
            raise ConfigError(
                f"{name}.schedule={self.schedule}: every round asks 1..{self.offered_per_user} "
                "(offered_per_user) queries per user"
            )
        if model is not None and self.criterion == "info_gain" and not has_belief(model):
            raise ConfigError(
                f"{name}.criterion='info_gain' needs a belief about each user, which "
                f"{type(model).__name__} has not; use VPL or a BTL ensemble (btl_ensemble)"
            )
        return self


def round_key(key: jax.Array, r: int) -> jax.Array:
    """The key of round r's pipeline (round 0: the offline pipeline's key)."""
    return jax.random.fold_in(jax.random.split(key)[0], r)


def _loop_key(key: jax.Array, r: int) -> jax.Array:
    return jax.random.fold_in(jax.random.split(key)[1], r)


def seed_keys(key: jax.Array, num_seeds: int) -> jax.Array:
    """``[S, 2]``: the keys of S seeds — seed 0's is ``key`` itself (one seed is the loop of a
    single key), seed s >= 1's ``fold_in(key, s)``."""
    key = as_raw_keys(key)
    return jnp.stack([key, *(jax.random.fold_in(key, s) for s in range(1, num_seeds))])


def _take(tree, s: int):
    return jax.tree.map(lambda x: x[s], tree)


def _expand(tree):
    return jax.tree.map(lambda x: jnp.asarray(x)[None], tree)


def _stack(trees: list):
    return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)


def _pipeline_seed(pipe: PipelineResult, pick: Callable) -> PipelineResult:
    """``pipe`` with ``pick`` applied to every array it holds (a seed's slice, or a new axis)."""
    reward = pipe.reward
    if reward is not None:
        reward = RewardFit(pick(reward.params), pick(reward.evaluation), pick(reward.history))
    return PipelineResult(
        reward, pick(pipe.inputs), pick(pipe.state), pick(pipe.z), pick(pipe.policy)
    )


@dataclasses.dataclass(frozen=True)
class RoundResult:
    """One round of the loop.

    Attributes:
      round: r (0 is the offline pipeline).
      n_queries: new queries asked per user before this round's reward was fitted.
      pipeline: the round's reward, policy and test-user evaluation.
      onpolicy_accuracy: mean over test users of the reward's accuracy on their rational answers
        about pairs of the round's policy segments against any segment.
      segments: the segments rolled out from the round's policy (S_new of them).
      seeds: whether every array above leads with a seed axis S (``onpolicy_accuracy`` is then
        ``f64[S]``); :meth:`seed` gives seed s's round alone.
    """

    round: int
    n_queries: int
    pipeline: PipelineResult
    onpolicy_accuracy: float | np.ndarray
    segments: Segments
    seeds: bool = False

    @property
    def num_seeds(self) -> int:
        return len(self.onpolicy_accuracy) if self.seeds else 1

    def seed(self, s: int) -> RoundResult:
        """Seed s's round, without a seed axis (a round of one key is its own seed 0)."""
        if not self.seeds:
            if s != 0:
                raise IndexError(f"seed {s} of a round of one key")
            return self
        return RoundResult(
            self.round,
            self.n_queries,
            _pipeline_seed(self.pipeline, lambda tree: _take(tree, s)),
            float(self.onpolicy_accuracy[s]),
            _take(self.segments, s),
        )

    def with_seed_axis(self) -> RoundResult:
        """The round with a seed axis of one (a round of one key as one of S = 1 seeds)."""
        if self.seeds:
            return self
        return RoundResult(
            self.round,
            self.n_queries,
            _pipeline_seed(self.pipeline, _expand),
            np.array([self.onpolicy_accuracy]),
            _expand(self.segments),
            seeds=True,
        )

    @property
    def heldout_accuracy(self) -> float:
        """Mean over the test users (and seeds) of their held-out accuracy."""
        return self.pipeline.heldout_accuracy

    @property
    def true_return(self) -> float:
        """Mean over the test users (and seeds) of their true return."""
        return self.pipeline.true_return


# --- data growth (host side, eager: shapes change only once, at round 1) --------------------------
def _pad(x: jax.Array, size: int) -> jax.Array:
    return jnp.concatenate([x, jnp.zeros((size - x.shape[0], *x.shape[1:]), x.dtype)])


def add_segments(bank: Segments, new: Segments, start: int, capacity: int) -> Segments:
    """``bank`` padded to ``capacity`` segments with ``new`` written at ``start``. Unused slots
    are all-dead zero segments (no pair points at them)."""
    if start + new.num_segments > capacity:
        raise ValueError(f"{new.num_segments} new segments at {start} exceed capacity {capacity}")
    return jax.tree.map(
        lambda b, n: _pad(b, capacity).at[start : start + n.shape[0]].set(n), bank, new
    )


def pad_context(dataset: PreferenceDataset, capacity: int) -> Queries:
    """The users' context padded to ``capacity`` pairs per user. Padding is masked out (pair
    ``(0, 0)``, label 0.5), so nothing reads it — the input statistics included
    (:func:`~vpl_jax.rewards.base.input_statistics` weighs pairs by the mask)."""
    context = dataset.context
    shape = (dataset.num_users, capacity - dataset.context_size)
    return Queries(
        pairs=jnp.concatenate([context.pairs, jnp.zeros((*shape, 2), context.pairs.dtype)], axis=1),
        labels=jnp.concatenate([context.labels, jnp.full(shape, 0.5)], axis=1),
        mask=jnp.concatenate([context.mask, jnp.zeros(shape, bool)], axis=1),
    )


def write_queries(context: Queries, answers: Queries, slot: int) -> Queries:
    """``context`` (``[U, K_cap]``) with ``answers`` (``[U, n]``) written at pairs
    ``slot .. slot + n - 1`` of every user."""
    n = answers.labels.shape[1]
    return jax.tree.map(lambda old, new: old.at[:, slot : slot + n].set(new), context, answers)


def new_pairs(key: jax.Array, num_users: int, num_pairs: int, start: int, stop: int) -> jax.Array:
    """i32[U, Q, 2]: pairs of a new segment (index in ``start..stop-1``) and any other segment
    (index in ``0..stop-1``), in random order within each pair."""
    k_a, k_b, k_swap = jax.random.split(key, 3)
    shape = (num_users, num_pairs)
    a = jax.random.randint(k_a, shape, start, stop)
    b = (a + jax.random.randint(k_b, shape, 1, stop)) % stop  # any segment but a
    swap = jax.random.bernoulli(k_swap, 0.5, shape)
    return jnp.stack([jnp.where(swap, b, a), jnp.where(swap, a, b)], -1).astype(jnp.int32)


# --- query selection ------------------------------------------------------------------------------
@functools.partial(jax.jit, static_argnames=("model", "criterion", "num_pick", "num_samples"))
def select_queries(
    key: jax.Array,
    model: R.RewardModel,
    params: Any,
    criterion: str,
    context: R.PairBatch,
    bank: R.SegmentBank,
    offered: jax.Array,
    num_pick: int,
    num_samples: int = 16,
) -> jax.Array:
    """i32[U, n]: for every user the indices of the ``num_pick`` offered pairs to ask.

    Information gain is :mod:`vpl_jax.active`'s: over the particles and weights of the model's
    belief about the user (:func:`~vpl_jax.active.make_belief`) — ``num_samples`` samples of
    ``q(z | context)`` for a latent model, a BTL ensemble's members weighted by how well each
    explains the user's answers so far.

    Args:
      key: PRNG key.
      model, params: the current reward model.
      criterion: ``random`` or ``info_gain``.
      context: PairBatch[U, K] each user's labelled pairs so far.
      bank: the model's per-step inputs of the segment bank.
      offered: i32[U, C, 2] the pairs offered to each user.
      num_pick: n <= C.
      num_samples: posterior samples per user (information gain with a latent model).
    """
    keys = jax.random.split(key, offered.shape[0])
    dummy = jnp.zeros(offered.shape[1])
    belief = None if criterion == "random" else make_belief(model, num_samples)

    def scores(k, ctx, pairs):
        if belief is None:
            return jax.random.uniform(k, pairs.shape[:1])
        targets = R.gather_pairs(bank, pairs, dummy, dummy.astype(bool))
        z, w = belief.particles(params, ctx, k)
        return information_gain(jax.nn.sigmoid(belief.pair_logits(params, targets, z)), w)

    batched = jax.lax.map(lambda a: scores(*a), (keys, context, offered), batch_size=64)
    return jax.lax.top_k(batched, num_pick)[1]


# --- evaluation on the policy's segments ----------------------------------------------------------
def _onpolicy_pairs(
    key: jax.Array, model: R.RewardModel, dataset: PreferenceDataset, start: int, stop: int,
    num_pairs: int,
) -> tuple[R.UserPairs, R.UserPairs]:  # fmt: skip
    """The test users' context and their rational answers about the on-policy pairs."""
    _, test = dataset.split()
    k_pairs, k_label = jax.random.split(key)
    pairs = new_pairs(k_pairs, test.num_users, num_pairs, start, stop)
    answers = label_queries(k_label, test.users.rational(), test.segments, pairs)
    context = R.user_pairs(test, "context", model.inputs)
    return context, context.replace(pairs=answers.pairs, labels=answers.labels, mask=answers.mask)


def onpolicy_accuracy(
    key: jax.Array,
    model: R.RewardModel,
    params: Any,
    dataset: PreferenceDataset,
    start: int,
    stop: int,
    num_pairs: int,
) -> float:
    """Mean over test users of the reward's accuracy on their *rational* answers about
    ``num_pairs`` pairs of a segment in ``start..stop-1`` (the policy's) and any earlier one,
    given each user's context."""
    context, targets = _onpolicy_pairs(key, model, dataset, start, stop, num_pairs)
    evaluation = R.evaluate(model, params, context, targets)
    return float(np.nanmean(np.asarray(evaluation.accuracy)))


# --- the offline pipeline of S seeds, each on its own data ---------------------------------------
@functools.partial(jax.jit, static_argnames=("model", "config"))
def _fit_seeds(model, config, keys, train, valid):
    return jax.vmap(lambda k, t, v: R.train_run(model, config, k, t, v))(keys, train, valid)


@functools.partial(jax.jit, static_argnames=("model", "num_types"))
def _evaluate_seeds(model, params, context, heldout, num_types):
    metrics = lambda p, c, h: evaluation_metrics(model, p, c, h, num_types)  # noqa: E731
    return jax.vmap(metrics)(params, context, heldout)


def _seed_views(datasets: PreferenceDataset, num_seeds: int) -> list[PreferenceDataset]:
    return [
        datasets.replace(segments=_take(datasets.segments, s), context=_take(datasets.context, s))
        for s in range(num_seeds)
    ]


def with_seeds(dataset: PreferenceDataset, num_seeds: int) -> PreferenceDataset:
    """``dataset`` with its segments and context repeated along a leading seed axis S (the
    input of :func:`offline_seeds` when every seed starts from the same data)."""
    repeat = lambda x: jnp.broadcast_to(x, (num_seeds, *x.shape))  # noqa: E731
    return dataset.replace(
        segments=jax.tree.map(repeat, dataset.segments),
        context=jax.tree.map(repeat, dataset.context),
    )


def offline_seeds(
    keys: jax.Array,
    datasets: PreferenceDataset,
    model: R.RewardModel | None,
    method: str,
    reward_train: R.TrainConfig,
    trainer: PolicyTrainer,
    num_eval_episodes: int,
    desc: str = "PPO",
    checkpointer: Checkpointer | None = None,
) -> PipelineResult:
    """The offline pipeline (:func:`~vpl_jax.pipeline.offline`) of S seeds, seed s with
    ``keys[s]`` on its own data.

    ``datasets``: one dataset whose segments and context lead with S (seed s's bank and its
    users' context; :func:`with_seeds` for shared data); the users and held-out pairs are the
    seeds' shared ones. The S reward fits train in one ``vmap`` (each on its own pairs), the S
    PPO runs in one ``vmap`` (:meth:`~vpl_jax.pipeline.PolicyTrainer.train`), and the S
    evaluations run in one ``vmap``; seed s equals :func:`~vpl_jax.pipeline.offline` with
    ``keys[s]`` on its data to float rounding. One seed runs ``offline`` itself (no ``vmap``).

    Returns:
      A :class:`~vpl_jax.pipeline.PipelineResult` whose arrays lead with S.
    """
    keys = as_raw_keys(keys)
    num_seeds = keys.shape[0]
    views = _seed_views(datasets, num_seeds)
    if num_seeds == 1:
        result = offline(keys[0], views[0], model, method, reward_train, trainer,
                         num_eval_episodes, desc, checkpointer)  # fmt: skip
        return _pipeline_seed(result, _expand)
    check_trainer(trainer, method, model)
    split = jax.vmap(lambda k: jax.random.split(k, 3))(keys)  # [S, 3, 2]
    k_reward, k_policy, k_eval = split[:, 0], split[:, 1], split[:, 2]
    reward, params = None, [None] * num_seeds
    _, test = views[0].split()
    if policy_method(method, model).reward is not None:
        splits = [R.validation_split(d) for d in views]
        fit_users = _stack([untyped(R.user_pairs(f, "all", model.inputs)) for f, _ in splits])
        valid_users = _stack([untyped(R.user_pairs(v, "all", model.inputs)) for _, v in splits])
        check_training_inputs(model, reward_train, _take(fit_users, 0), _take(valid_users, 0))
        place = sharding.placement(num_seeds)
        stacked, history = place.gather(
            _fit_seeds(model, reward_train, *place.split((k_reward, fit_users, valid_users)))
        )
        check_converged(history)
        tests = [d.split()[1] for d in views]
        context = _stack([untyped(R.user_pairs(t, "context", model.inputs)) for t in tests])
        heldout = _stack([untyped(R.user_pairs(t, "heldout", model.inputs)) for t in tests])
        type_id = np.asarray(test.users.type_id)
        num_types = max(len(test.meta.type_names), int(type_id.max(initial=0)) + 1)
        evaluation = _evaluate_seeds(model, stacked, context, heldout, num_types)
        reward = RewardFit(params=stacked, evaluation=evaluation, history=history)
        params = [_take(stacked, s) for s in range(num_seeds)]
    references = [None] * num_seeds
    if not is_unconditioned(method, model):
        references = [reference_states(model, d, named_key(k, "references"))
                      for d, k in zip(views, keys, strict=True)]  # fmt: skip
    inputs = _stack([policy_inputs(method, model, p, d, ref)
                     for p, d, ref in zip(params, views, references, strict=True)])  # fmt: skip
    states, _ = trainer.train(k_policy, inputs, desc, checkpointer)
    z = _stack([test_latents(method, model, p, d) for p, d in zip(params, views, strict=True)])
    ppo = trainer.acting()

    def evaluate(state, z_s, key):
        act_params = ppo.policy_params(state)
        return P.evaluate(
            trainer.env, ppo.act, act_params, z_s, test.users.theta, key, num_eval_episodes
        )

    policy = jax.vmap(evaluate)(states, z, k_eval)
    return PipelineResult(reward=reward, inputs=inputs, state=states, z=z, policy=policy)


# --- the loop -------------------------------------------------------------------------------------
def _onpolicy_seeds(keys, model, params, dataset, segments, context, start, stop, num_pairs):
    """f64[S]: :func:`onpolicy_accuracy` of S seeds (seed s's params, bank and context), in
    one ``vmap``."""

    def one(key, p, seg, ctx):
        data = dataset.replace(segments=seg, context=ctx)
        context, targets = _onpolicy_pairs(key, model, data, start, stop, num_pairs)
        return evaluation_metrics(model, p, untyped(context), untyped(targets)).accuracy

    accuracy = np.asarray(jax.vmap(one)(keys, params, segments, context))
    return np.nanmean(accuracy, axis=1)


def iterate(
    key: jax.Array,
    dataset: PreferenceDataset,
    model: R.RewardModel,
    method: str,
    reward_train: R.TrainConfig,
    trainer: PolicyTrainer,
    config: IterateConfig,
    on_round: Callable[[RoundResult], None] | None = None,
    round0: RoundResult | None = None,
    checkpointers: Callable[[int], Checkpointer | None] | None = None,
) -> list[RoundResult]:
    """Runs round 0 (the offline pipeline) and ``len(config.schedule)`` online rounds.

    Args:
      key: PRNG key (see :func:`round_key`), or S keys ``[S, 2]`` (:func:`seed_keys`): S loops
        in one ``vmap`` on the same data (see the module docstring), every result with a
        leading seed axis (:attr:`RoundResult.seeds`).
      dataset: the initial (e.g. narrow) preference data; its users answer every round.
      model, method: the reward model and its method name (not the oracle).
      reward_train: the reward trainer's configuration (every round trains from scratch).
      trainer: the method's :class:`~vpl_jax.pipeline.PolicyTrainer`.
      config: the loop's schedule and sizes.
      on_round: called with each :class:`RoundResult` as soon as it is done (progress, logs).
      round0: round 0 of an earlier call with the same key(s), data, model and trainer (round
        0 does not depend on the criterion, so loops that differ only in it can share it).
      checkpointers: ``checkpointers(r)`` gives round r's PPO checkpointer (or None). Every
        round is pure in the key, so a loop killed in round r and run again recomputes the
        earlier rounds' rewards, restores their finished policies and resumes round r's PPO
        (of all S seeds).

    Returns:
      The rounds' results, round 0 first.
    """
    config.validate(model)
    check_partial_return(dataset.users.human, "the iterate loop")
    if policy_method(method, model).reward is None:
        raise ValueError(f"the iterate loop learns a reward; method {method!r} has none")
    key = as_raw_keys(key)
    seeds = key.ndim == 2
    if round0 is not None and (round0.round, round0.n_queries) != (0, 0):
        raise ValueError(f"round0 must be a round 0, got round {round0.round}")
    if round0 is not None and round0.num_seeds != (key.shape[0] if seeds else 1):
        raise ValueError(f"round0 has {round0.num_seeds} seeds; this loop has other keys")
    if seeds and key.shape[0] == 1:  # one seed: the loop of its key, without vmap
        report = None if on_round is None else (lambda r: on_round(r.with_seed_axis()))
        first = None if round0 is None else round0.seed(0)
        rounds = iterate(key[0], dataset, model, method, reward_train, trainer, config, report,
                         first, checkpointers)  # fmt: skip
        return [r.with_seed_axis() for r in rounds]
    per_seed = jax.vmap if seeds else (lambda f: f)  # each step is written for one seed
    horizon = dataset.segments.horizon
    per_episode = trainer.env.episode_length // horizon
    new_per_round = config.episodes_per_round * per_episode
    num_rounds = len(config.schedule)
    seg_capacity = dataset.segments.num_segments + (num_rounds + 1) * new_per_round
    context_capacity = dataset.context_size + sum(config.schedule)

    def view(segments, context):  # one seed's data: its bank and context, the shared users
        return dataset.replace(segments=segments, context=context)

    current = with_seeds(dataset, key.shape[0]) if seeds else dataset
    filled, asked, results = dataset.segments.num_segments, 0, []
    for r in range(num_rounds + 1):
        loop_keys = per_seed(lambda k, r=r: jax.random.split(_loop_key(k, r), 5))(key)
        k_roll, k_onpolicy, k_offer, k_select, k_label = (loop_keys[..., i, :] for i in range(5))
        if r == 0 and round0 is not None:
            round_result = round0
            new = round0.segments
        else:
            k_round = per_seed(lambda k, r=r: round_key(k, r))(key)
            pipeline = offline_seeds if seeds else offline
            result = pipeline(
                k_round,
                current,
                model,
                method,
                reward_train,
                trainer,
                config.num_eval_episodes,
                desc=f"{method} {config.criterion} round {r} PPO",
                checkpointer=None if checkpointers is None else checkpointers(r),
            )
            z = result.inputs.get("mean")
            if is_unconditioned(method, model):
                z = jnp.zeros((*key.shape[:-1], 1, 0))
            new = per_seed(
                lambda state, z, k: trainer.segments(
                    state, jnp.asarray(z), k, config.episodes_per_round, horizon
                )
            )(result.state, z, k_roll)
        stop = filled + new.alive.shape[-2]
        grow = lambda bank, new, at=filled: add_segments(bank, new, at, seg_capacity)  # noqa: E731
        current = current.replace(segments=per_seed(grow)(current.segments, new))
        if not (r == 0 and round0 is not None):
            params = result.reward.params
            if seeds:
                accuracy = _onpolicy_seeds(
                    k_onpolicy, model, params, dataset, current.segments, current.context,
                    filled, stop, config.onpolicy_pairs,
                )  # fmt: skip
            else:
                accuracy = onpolicy_accuracy(
                    k_onpolicy, model, params, current, filled, stop, config.onpolicy_pairs
                )
            round_result = RoundResult(r, asked, result, accuracy, new, seeds=seeds)
        results.append(round_result)
        if on_round is not None:
            on_round(round_result)
        if r == num_rounds:
            break

        if r == 0:
            pad = lambda context: pad_context(dataset.replace(context=context), context_capacity)  # noqa: E731
            current = current.replace(context=per_seed(pad)(current.context))
        n, slot = config.schedule[r], dataset.context_size + asked

        def ask(k_offer, k_select, k_label, params, segments, context, n=n, slot=slot,
                start=filled, stop=stop):  # fmt: skip
            """One seed's new answers: offer pairs on its policy's segments, pick, label."""
            data = view(segments, context)
            offered = new_pairs(k_offer, data.num_users, config.offered_per_user, start, stop)
            pairs = R.user_pairs(data, "context", model.inputs)
            pick = select_queries(
                k_select,
                model,
                params,
                config.criterion,
                pairs.batch(),
                pairs.bank,
                offered,
                n,
                config.num_samples,
            )
            asked_pairs = jnp.take_along_axis(offered, pick[..., None], axis=1)
            answers = label_queries(k_label, data.users, data.segments, asked_pairs)
            return write_queries(context, answers, slot)

        params = round_result.pipeline.reward.params
        current = current.replace(
            context=per_seed(ask)(
                k_offer, k_select, k_label, params, current.segments, current.context
            )
        )
        filled, asked = stop, asked + n
    return results


def normalized_return(true_return, oracle_return, baseline_return) -> float:
    """``(R - R_0) / (R_oracle - R_0)``: a policy's true return on the scale from a baseline
    (e.g. standing still, 0) to the oracle (1), each the mean over the same test users."""
    span = float(np.mean(oracle_return)) - float(np.mean(baseline_return))
    if span <= 0:
        raise ValueError(f"the oracle's return does not exceed the baseline's (span {span})")
    return (float(np.mean(true_return)) - float(np.mean(baseline_return))) / span


def misidentification_gap(heldout_accuracy: float, normalized: float) -> float:
    """Held-out accuracy minus normalised true return: large when the reward fits its data but
    the policy optimised on it is poor; about 0 when the reward is as good as it looks."""
    return float(heldout_accuracy) - float(normalized)
