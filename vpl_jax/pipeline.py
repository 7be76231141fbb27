"""The offline pipeline as library calls: preference data -> reward -> policy -> per-user scores.

    trainer = PolicyTrainer(env, "vpl", model, PPOConfig(center_rewards=True))
    result = offline(key, dataset, model, "vpl", TrainConfig(), trainer, num_eval_episodes=8)
    result.heldout_accuracy, result.policy.true_return      # test users' numbers

(``tests/test_misspecification.py`` calls ``offline`` with these arguments at a tiny size.)

Pieces, in the order they run:

* :func:`fit_reward` — the reward model on the training users (early stopping on a validation
  split of them), scored on the test users' held-out pairs given their context;
* :func:`policy_inputs` / :func:`policy_env` — what a method's PPO environment needs (the reward
  params; for a latent model the training users' posteriors, from which ``z`` is drawn per
  episode; for the oracle the true ``theta``) and the environment itself;
* :class:`PolicyTrainer` — PPO for one method, compiled once and reused for every reward of the
  same shapes (rounds of the iterate loop, points of a sweep); R runs train in one ``vmap``;
* :func:`test_latents` and :meth:`PolicyTrainer.evaluate` — each test user's ``z`` (posterior
  mean from their context; true ``theta`` for the oracle; nothing for an unconditioned policy)
  and the true return of the policy acting on it;
* :func:`policy_segments` — segments cut from a trained policy's own rollouts (the iterate
  loop's new queries; on-policy evaluation).

Relabelled data — one set of pairs labelled P ways, e.g. by users with P different human models
— trains in one compiled ``vmap`` with :func:`fit_relabellings` (S seeds of each in the same
call) and is scored against shared target labels with :func:`score_relabellings`; for P
labellings of one dataset (:func:`vpl_jax.data.relabel`), :func:`fit_labellings` and
:func:`score_labellings` do the splitting and stacking, and :func:`labelling_scores` averages
the test users' accuracy (and LinearBayes' alignment with theta) per labelling. Labels given
with a known deviation from the assumed human model are fitted with the correct one through
:func:`correct_human_model` (the model told the discount, or the features the user believed in).

The oracle — PPO on every user's true reward, with raw rewards so that its critic is each user's
``V*`` — is :func:`train_oracle` (its runs' returns for each user: :func:`oracle_returns`);
one policy per learned reward (R rewards in one ``vmap``), each
scored on its dataset's test users, is :func:`policies_on_rewards`.

A latent-conditioned policy acting on each test user's posterior after every number of queries
of an elicitation (:mod:`vpl_jax.active`) is :func:`policy_curves`; an oracle's critic values at
the ends of segments (what regret-based labellers compare) are
:meth:`PolicyTrainer.segment_values`.

Methods (names as in results) are entries of :data:`POLICY_METHODS` (:class:`PolicyMethod`:
which reward, what ``z`` is, whether the reward is scaled): ``oracle`` (PPO on ``theta · phi``
with ``z = theta``), ``btl`` (one reward for everyone, an unconditioned policy), ``vpl`` (reward
``r(s, z)``), ``vpl_spo`` (VPL's reward scaled to a win probability against reference states);
any other reward method's name is that model, conditioned on its posterior if it has one
(``btl_ensemble``, ``dpl_meanvar``: unconditioned). A new method is one
:func:`register_policy_method` call. A policy's learned reward reads the step input of the
model's kind (``model.inputs``; by default the whole transition, see :func:`~vpl_jax.rewards.
step_inputs`).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any, get_args

import jax
import jax.numpy as jnp
import numpy as np

from vpl_jax import policies as P
from vpl_jax import rewards as R
from vpl_jax.data.beliefs import perceived, shifted_hazard
from vpl_jax.data.dataset import PreferenceDataset, label_queries
from vpl_jax.data.rollouts import rollout_episode
from vpl_jax.data.segments import Segments, cut_segments
from vpl_jax.envs.base import FeatureEnv
from vpl_jax.keys import named_key
from vpl_jax.rewards.batch import check_user_pairs, untyped
from vpl_jax.rewards.trainer import (
    as_raw_keys,
    check_training_inputs,
    is_key_batch,
    seed_placement,
    train_run,
)
from vpl_jax.runtime import sharding
from vpl_jax.runtime.checkpoint import Checkpointer
from vpl_jax.users import segment_values


# --- rewards --------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class RewardFit:
    """A reward model trained on a dataset's training users and scored on its test users.

    Attributes:
      params: the trained params (leading with S for S seeds).
      evaluation: the test users' held-out metrics given their context
        (:class:`~vpl_jax.rewards.Evaluation`; leading with S for S seeds).
      history: the trainer's :class:`~vpl_jax.rewards.History` (S seeds: leading with S).
    """

    params: Any
    evaluation: R.Evaluation
    history: Any = None

    @property
    def heldout_accuracy(self) -> float:
        """Mean over test users (and seeds) of their held-out accuracy."""
        return float(np.nanmean(np.asarray(self.evaluation.accuracy)))


def train_reward(
    model: R.RewardModel,
    config: R.TrainConfig,
    key: jax.Array,
    dataset: PreferenceDataset,
    validation_fraction: float = 0.2,
    fit: Callable[..., tuple[Any, Any]] = R.fit,
) -> tuple[Any, Any]:
    """``(params, history)`` of ``model`` trained on the training users' pairs (all K + M of
    each), early-stopping on a validation split of them (:func:`~vpl_jax.rewards.
    validation_split`); :func:`fit_reward` without the test users' scores. ``key`` and ``fit``
    as there."""
    fit_users, valid_users = R.validation_split(dataset, validation_fraction)
    return fit(
        model,
        config,
        key,
        R.user_pairs(fit_users, "all", model.inputs),
        R.user_pairs(valid_users, "all", model.inputs),
    )


def chunked_fit(checkpointer=None, chunk_epochs: int = 10, desc: str = "reward model"):
    """A ``fit`` for :func:`fit_reward` / :func:`train_reward`: :func:`~vpl_jax.rewards.
    fit_chunked` (the same numbers as :func:`~vpl_jax.rewards.fit`) in jitted chunks of
    ``chunk_epochs`` epochs with a progress bar, checkpointed and resumed by ``checkpointer``
    (a :class:`~vpl_jax.runtime.checkpoint.Checkpointer`, or None)."""
    return functools.partial(
        R.fit_chunked, chunk_epochs=chunk_epochs, checkpointer=checkpointer, desc=desc
    )


def fit_reward(
    model: R.RewardModel,
    config: R.TrainConfig,
    key: jax.Array,
    dataset: PreferenceDataset,
    validation_fraction: float = 0.2,
    fit: Callable[..., tuple[Any, Any]] = R.fit,
) -> RewardFit:
    """Trains ``model`` on the training users' pairs (all K + M of each), early-stopping on a
    validation split of them, and evaluates the test users' held-out pairs given their context.

    One ``key``, or S keys (a leading axis): S seeds trained in one ``vmap`` and scored
    together. ``fit`` is :func:`~vpl_jax.rewards.fit` or one with its signature (e.g.
    :func:`~vpl_jax.rewards.fit_chunked` with a checkpointer bound). Every dataset of the same
    shapes reuses the compiled fit and scores, whatever its population's type names.
    """
    params, history = train_reward(model, config, key, dataset, validation_fraction, fit)
    _, test = dataset.split()
    evaluation = R.evaluate(
        model,
        params,
        R.user_pairs(test, "context", model.inputs),
        R.user_pairs(test, "heldout", model.inputs),
        seeds=is_key_batch(as_raw_keys(key)),
    )
    return RewardFit(params=params, evaluation=evaluation, history=history)


def relabelled(data: R.UserPairs, labels: jax.Array, mask: jax.Array) -> R.UserPairs:
    """The same pairs with new labels: ``labels, mask: [..., U, Q]`` (leading axes allowed)."""
    return data.replace(labels=jnp.asarray(labels, jnp.float32), mask=jnp.asarray(mask, bool))


def _labelling_axes(data: R.UserPairs | None):
    """vmap axes of UserPairs whose labels and mask carry a leading labelling axis."""
    if data is None:
        return None
    return data.replace(bank=None, pairs=None, labels=0, mask=0, type_id=None)


@functools.partial(jax.jit, static_argnames=("model", "config", "seeds"))
def _fit_relabellings(model, config, key, train, valid, seeds: bool):
    run = lambda k, t, v: train_run(model, config, k, t, v)[0]  # noqa: E731
    labellings = jax.vmap(run, in_axes=(None, _labelling_axes(train), _labelling_axes(valid)))
    if seeds:
        return jax.vmap(labellings, in_axes=(0, None, None))(key, train, valid)
    return labellings(key, train, valid)


def fit_relabellings(
    model: R.RewardModel,
    config: R.TrainConfig,
    key: jax.Array,
    train: R.UserPairs,
    valid: R.UserPairs | None = None,
) -> Any:
    """One model per labelling of the same pairs, in one compiled ``vmap``: params with a
    leading axis P — or, for S keys (``key: [S, 2]``), S seeds of each in the same call, params
    leading with ``[S, P]`` (the seeds split across the devices of an enclosing
    :func:`~vpl_jax.runtime.sharding.use_devices`).

    ``train.labels``/``train.mask`` (and ``valid``'s) are ``[P, U, Q]``: the same users' same
    pairs labelled P ways (e.g. by P human models). Every labelling trains from the same key, so
    differences between the P models come from the labels alone (common random numbers).
    """
    first = lambda d: None if d is None else relabelled(d, d.labels[0], d.mask[0])  # noqa: E731
    check_training_inputs(model, config, first(train), first(valid))
    key = as_raw_keys(key)
    seeds = is_key_batch(key)
    place = seed_placement(key, seeds)
    train, valid = untyped(train), untyped(valid)  # as rewards.fit: compiled once per shapes
    key, (train, valid) = place.split(key), place.replicate((train, valid))
    return place.gather(_fit_relabellings(model, config, key, train, valid, seeds=seeds))


def undiscounted(model: R.RewardModel) -> R.RewardModel:
    """The model with the partial-return likelihood (discount 1), for models that have one."""
    try:
        return R.with_discount(model, 1.0)
    except ValueError:
        return model


@functools.partial(jax.jit, static_argnames=("model", "seeds"))
def _score_relabellings(model, params, context, targets, seeds: bool):
    plain = undiscounted(model)
    batch = targets.batch()

    def one(p, labels, mask):
        mean = None
        if R.is_latent(model):
            mean = model.posterior(p, relabelled(context, labels, mask).batch()).mean()
            logits = plain.pair_logits(p, batch, mean)
        else:
            logits = plain.pair_logits(p, batch)
        accuracy = R.strict_accuracy(logits, batch.labels, batch.mask, axis=-1, empty=jnp.nan)
        return accuracy, mean

    labellings = jax.vmap(one)
    if seeds:
        return jax.vmap(labellings, in_axes=(0, None, None))(params, context.labels, context.mask)
    return labellings(params, context.labels, context.mask)


def score_relabellings(
    model: R.RewardModel,
    params: Any,
    context: R.UserPairs,
    targets: R.UserPairs,
    seeds: bool = False,
) -> tuple[jax.Array, jax.Array | None]:
    """How P models (params with a leading axis P; ``[S, P]`` with ``seeds``) judge the same
    target pairs.

    Model p reads each user's context as labelled the p-th way (``context.labels: [P, U, K]``)
    and predicts the shared ``targets`` (e.g. the users' *rational* answers) with its posterior
    mean and its *undiscounted* segment returns: a model that assumed myopic labellers still
    learned a per-step reward, and the rational user sums it without discount. The context and
    the targets may come from different segment banks (e.g. features a user believed in, and the
    true ones).

    Returns:
      ``(accuracy f32[P, U], posterior_mean f32[P, U, Z] or None)`` (each with a leading S with
      ``seeds``): each user's accuracy on their strict target labels (NaN if none), and their
      posterior means (latent models).
    """
    first = relabelled(context, context.labels[0], context.mask[0])
    check_user_pairs(first, "context", model.inputs)
    check_user_pairs(targets, "targets", model.inputs)
    return _score_relabellings(model, params, context, targets, seeds=seeds)


# --- labellings of one dataset --------------------------------------------------------------------
def labelling_pairs(datasets: list[PreferenceDataset], part: str, inputs: str) -> R.UserPairs:
    """The ``part`` pairs of P labellings of one dataset (the same users and pairs, different
    answers, e.g. from :func:`vpl_jax.data.relabel`) as one :class:`~vpl_jax.rewards.UserPairs`
    with labels and mask ``[P, U, Q]``, for :func:`fit_relabellings`/:func:`score_relabellings`."""
    pairs = [R.user_pairs(d, part, inputs) for d in datasets]
    return relabelled(
        pairs[0], jnp.stack([p.labels for p in pairs]), jnp.stack([p.mask for p in pairs])
    )


def fit_labellings(
    model: R.RewardModel,
    config: R.TrainConfig,
    key: jax.Array,
    datasets: list[PreferenceDataset],
    validation_fraction: float = 0.2,
) -> Any:
    """``model`` trained on each of P labellings of one dataset (every training user's K + M
    pairs, early-stopping on a validation split of them) in one compiled ``vmap``: params lead
    with P, or with ``[S, P]`` for S keys ``key: [S, 2]`` (:func:`fit_relabellings`)."""
    splits = [R.validation_split(d, validation_fraction) for d in datasets]
    return fit_relabellings(
        model,
        config,
        key,
        labelling_pairs([fit for fit, _ in splits], "all", model.inputs),
        labelling_pairs([valid for _, valid in splits], "all", model.inputs),
    )


def score_labellings(
    model: R.RewardModel,
    params: Any,
    datasets: list[PreferenceDataset],
    targets: PreferenceDataset,
    part: str = "context",
    context_size: int | None = None,
    seeds: bool = False,
) -> tuple[jax.Array, jax.Array | None]:
    """How the models of :func:`fit_labellings` judge the test users' held-out pairs as
    labelled in ``targets`` (e.g. their rational answers; a test-user dataset), model p given
    each test user's ``part`` pairs (``"context"`` or ``"all"``) as labelled in
    ``datasets[p]`` — only their first ``context_size`` context pairs, if given.

    Returns ``(accuracy f32[P, U], posterior_mean f32[P, U, Z] or None)``, with a leading S
    for params of S seeds (``seeds``), as :func:`score_relabellings`.
    """
    context = labelling_pairs([d.split()[1] for d in datasets], part, model.inputs)
    if context_size is not None:
        context = context.with_context_size(context_size)
    heldout = R.user_pairs(targets, "heldout", model.inputs)
    return score_relabellings(model, params, context, heldout, seeds=seeds)


def labelling_scores(
    model: R.RewardModel,
    params: Any,
    datasets: list[PreferenceDataset],
    targets: PreferenceDataset,
    seeds: bool = False,
) -> dict[str, np.ndarray]:
    """Per labelling, the test users' mean scores of the models of :func:`fit_labellings`
    (params leading with P; with ``seeds``, ``[S, P]`` for S seeds, all scored in one ``vmap``),
    against the answers in ``targets`` (a test-user dataset whose held-out labels are the
    reference, e.g. the users' rational answers):

    * ``accuracy`` f32[P] (``[S, P]`` with ``seeds``) — held-out accuracy given each user's
      context pairs as labelled in ``datasets[p]`` (:func:`score_labellings`), averaged over
      users with held-out pairs;
    * ``alignment`` f32[P] (``[S, P]``), for LinearBayes only (its latent is theta) — the cosine
      between the posterior mean of theta from all of a user's pairs and the user's true
      ``targets.users.theta``, averaged over users.
    """
    accuracy, _ = score_labellings(model, params, datasets, targets, seeds=seeds)
    out = {"accuracy": np.nanmean(np.asarray(accuracy), axis=-1)}  # over the users
    if isinstance(model, R.LinearBayes):  # its latent is theta itself
        _, mean = score_labellings(model, params, datasets, targets, part="all", seeds=seeds)
        theta = np.asarray(targets.users.theta)
        mean = np.asarray(mean)
        out["alignment"] = np.asarray(R.cosine(mean, theta)).mean(axis=-1)
    return out


def rational_targets(key: jax.Array, dataset: PreferenceDataset) -> PreferenceDataset:
    """The test users of ``dataset`` with their held-out pairs answered by their rational selves
    (:meth:`~vpl_jax.users.User.rational`, on the true features) with ``key``: the reference
    answers of :func:`labelling_scores` and :func:`label_agreement`."""
    _, test = dataset.split()
    answers = label_queries(key, test.users.rational(), test.segments, test.heldout.pairs)
    return test.replace(heldout=answers)


def label_agreement(datasets: list[PreferenceDataset], targets: PreferenceDataset) -> np.ndarray:
    """f64[P]: per labelling of one dataset, the share of its test users' held-out answers
    (every pair, masked or not) that equal the held-out labels of ``targets`` (a test-user
    dataset, e.g. :func:`rational_targets`)."""
    labels = np.asarray(targets.heldout.labels)
    return np.array([np.mean(np.asarray(d.split()[1].heldout.labels) == labels) for d in datasets])


CORRECTABLE_KINDS: tuple[str, ...] = ("gamma", "belief")
"""Deviations whose correct human model :func:`correct_human_model` expresses."""


def correct_human_model(
    model: R.RewardModel, env: FeatureEnv, dataset: PreferenceDataset, kind: str, size: float
) -> tuple[R.RewardModel, PreferenceDataset]:
    """``(model, dataset)`` as the correct human model sees labels given with the deviation
    ``kind`` of ``size`` (:func:`vpl_jax.data.relabel_deviating`), for :func:`fit_labellings`:

    * ``"gamma"`` — myopia ``1 - gamma = size``: ``model`` told the discount
      (:func:`~vpl_jax.rewards.with_discount`; ``ValueError`` for a model without one) and the
      dataset as it is;
    * ``"belief"`` — a hazard believed ``size`` metres to the right: ``model`` as it is and
      the dataset's segments with the features of the believed world
      (:func:`~vpl_jax.data.perceived`, :func:`~vpl_jax.data.shifted_hazard`; only a model
      that reads features sees them).

    Raises ``ValueError`` naming ``kind`` for any other kind (no correct model expressible).
    """
    if kind == "gamma":
        return R.with_discount(model, 1.0 - size), dataset
    if kind == "belief":
        return model, perceived(env, dataset, shifted_hazard(env, size))
    raise ValueError(
        f"deviation kind {kind!r}: the framework cannot express its correct human model "
        f"(correctable: {list(CORRECTABLE_KINDS)})"
    )


# --- policies -------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class PolicyMethod:
    """What a policy method trains on and what its policy is conditioned on (one registry entry;
    a new method is one :func:`register_policy_method` call).

    Attributes:
      name: the method's name in results.
      reward: the reward method whose model it trains on (one of
        :data:`~vpl_jax.rewards.REWARD_METHODS`), or None for the true reward (the oracle).
      latent: what the policy's ``z`` is — ``"theta"``: the user's true weights (the reward is
        ``theta · phi``); ``"posterior"``: drawn per episode from a training user's posterior,
        a test user's posterior mean at evaluation; ``"none"``: nothing (one reward for all).
      reference_scaled: the reward is the latent model's, scaled per user to a win probability
        against reference states (VPL-SPO; needs ``references`` in :func:`policy_inputs`).
    """

    name: str
    reward: str | None
    latent: str
    reference_scaled: bool = False

    LATENTS = ("theta", "posterior", "none")

    def __post_init__(self):
        if self.latent not in self.LATENTS:
            raise ValueError(
                f"PolicyMethod {self.name!r}: latent={self.latent!r}, allowed: {list(self.LATENTS)}"
            )
        if (self.reward is None) != (self.latent == "theta"):
            raise ValueError(
                f"PolicyMethod {self.name!r}: only the true reward (reward=None) is conditioned "
                f"on theta, got reward={self.reward!r} with latent={self.latent!r}"
            )
        if self.reference_scaled and self.latent != "posterior":
            raise ValueError(f"PolicyMethod {self.name!r}: reference scaling needs a latent reward")


POLICY_METHODS: dict[str, PolicyMethod] = {}


def register_policy_method(method: PolicyMethod, *, overwrite: bool = False) -> PolicyMethod:
    """Adds ``method`` to :data:`POLICY_METHODS` (an existing name only with ``overwrite``)."""
    if method.name in POLICY_METHODS and not overwrite:
        raise ValueError(f"policy method {method.name!r} is already registered")
    POLICY_METHODS[method.name] = method
    return method


for _method in (
    PolicyMethod("oracle", reward=None, latent="theta"),
    PolicyMethod("btl", reward="btl", latent="none"),
    PolicyMethod("vpl", reward="vpl", latent="posterior"),
    PolicyMethod("vpl_spo", reward="vpl", latent="posterior", reference_scaled=True),
):
    register_policy_method(_method)


def policy_method(method: str, model: R.RewardModel | None = None) -> PolicyMethod:
    """The registered :class:`PolicyMethod` of ``method``; a name that is not registered is the
    reward method of that name, its policy conditioned on the posterior if ``model`` infers a
    user latent and on nothing otherwise (``btl_ensemble``, ``dpl_meanvar``, ...). Raises
    ``ValueError`` when ``model`` cannot serve the method (a latent method without a latent
    model)."""
    entry = POLICY_METHODS.get(method)
    if entry is None:
        latent = "posterior" if model is not None and R.is_latent(model) else "none"
        entry = PolicyMethod(method, reward=method, latent=latent)
    if entry.latent == "posterior" and (model is None or not R.is_latent(model)):
        raise ValueError(
            f"policy method {method!r} conditions on a user posterior, which "
            f"{type(model).__name__} has not"
        )
    return entry


def is_unconditioned(method: str, model: R.RewardModel | None) -> bool:
    """Whether ``method``'s policy ignores the user (one reward for everyone)."""
    return policy_method(method, model).latent == "none"


REWARD_SCALING: tuple[str, ...] = get_args(R.ScaleMethod)
"""Choices of a policy's per-user reward scaling (:func:`user_reward_scaling`)."""

DEFAULT_USER_SAMPLING = "balanced"
"""Training episodes draw their user balanced by default (:func:`policy_inputs`): every region
of the latent space gets about the same share of PPO's episodes, so a 10 % type is learned as
early as the majority. On highway's aggressive=0.7,stickler=0.2,considerate=0.1 (oracle, 3
seeds) it moves the true return from 28.6 / 3.0 / -2.8 to 27.7 / 3.7 / -1.9; on navigation's
two equal goal types it changes nothing (oracle 35.5 / 36.1 either way)."""

DEFAULT_REWARD_SCALING = "standardize"
"""Every conditioned policy's rewards are standardised per user by default: on highway's
mixed-weight populations the oracle, trained on raw ``theta · phi``, served a 10 % comfort-
and courtesy-minded type at a true return of -16 (3 seeds), standardised at -2.8 (a policy of
its own: -0.6); see the README's policy section."""


def check_reward_scaling(scaling: str) -> str:
    """``scaling`` if it is one of :data:`REWARD_SCALING`, else ``ValueError`` naming them."""
    if scaling not in REWARD_SCALING:
        raise ValueError(f"reward_scaling={scaling!r}, allowed: {list(REWARD_SCALING)}")
    return scaling


def user_reward_scaling(method: str, model: R.RewardModel | None, reward_scaling: str) -> str:
    """How ``method``'s policy rewards are rescaled per user against reference states
    (:mod:`vpl_jax.rewards.scaling`): VPL-SPO always by win probability; the oracle and other
    latent methods by ``reward_scaling``; an unconditioned reward never (it has one user).
    Why per user: :func:`vpl_jax.policies.scaled_latent_reward`."""
    check_reward_scaling(reward_scaling)
    entry = policy_method(method, model)
    if entry.reference_scaled:
        return "win_probability"
    return "none" if entry.latent == "none" else reward_scaling


def reference_states(
    model: R.RewardModel | None,
    dataset: PreferenceDataset,
    key: jax.Array | None = None,
    num: int = 256,
) -> jax.Array:
    """f32[N, D]: the reference steps a policy's per-user reward scaling compares against
    (:func:`user_reward_scaling`) — ``num`` live steps of the dataset's segments drawn with
    ``key`` (None: a fixed key), as ``model``'s inputs (the task's features for the oracle,
    ``model=None``)."""
    key = jax.random.PRNGKey(0) if key is None else key
    inputs = "features" if model is None else model.inputs
    return R.reference_inputs(key, R.segment_bank(dataset.segments, inputs), num)


def policy_env(
    method: str,
    env: FeatureEnv,
    model,
    inputs: dict,
    reward_scaling: str = DEFAULT_REWARD_SCALING,
) -> P.LatentReward:
    """The training environment of ``method`` for one run (``inputs`` may be traced).

    ``inputs`` (:func:`policy_inputs`): ``{"theta"}`` for the oracle; ``{"params"}`` for an
    unconditioned reward; ``{"params", "mean", "std"}`` (the training users' posteriors) for a
    latent one; conditioned ones add ``"references"`` (:func:`reference_states`), which
    ``reward_scaling`` uses (:func:`user_reward_scaling`; VPL-SPO always does).
    """
    entry = policy_method(method, model)
    scaling = user_reward_scaling(method, model, reward_scaling)
    if entry.latent == "none":
        params = inputs["params"]
        reward = P.learned_reward(lambda x, z: model.reward(params, x), model.inputs)
        return P.LatentReward(env, P.no_latent(), reward)
    references = inputs.get("references")
    if entry.latent == "theta":
        sampler = P.table_sampler(inputs["theta"], inputs.get("log_weights"))
        r, kind = (lambda x, z: jnp.dot(z, x)), "features"
        reference_rewards = lambda z: references @ z  # noqa: E731
    else:
        params = inputs["params"]
        sampler = P.posterior_sampler(inputs["mean"], inputs["std"], inputs.get("log_weights"))
        r, kind = (lambda x, z: model.reward(params, x, z)), model.inputs
        reference_rewards = lambda z: R.reference_rewards(model, params, references, z)  # noqa: E731
    return P.scaled_latent_reward(env, sampler, r, kind, scaling, reference_rewards)


def policy_inputs(
    method: str,
    model: R.RewardModel | None,
    params: Any,
    dataset: PreferenceDataset,
    references: jax.Array | None = None,
    user_sampling: str = DEFAULT_USER_SAMPLING,
) -> dict:
    """What ``method``'s training environment needs for one run (see :func:`policy_env`).

    For a latent model the training users' posteriors come from their context pairs. A
    conditioned method (oracle, VPL, VPL-SPO) also gets ``references: f32[N, D]``, the
    reference steps of per-user reward scaling (:func:`reference_states`; computed with its
    defaults when not given), used when :class:`PolicyTrainer`'s ``reward_scaling`` asks.
    ``user_sampling`` (:data:`~vpl_jax.policies.USER_SAMPLING`) is how a training episode
    picks its user: ``"uniform"``, or ``"balanced"`` — weighted inversely to the density of
    their true ``theta`` (oracle) or posterior mean (latent models), so a minority type gets
    as many episodes as the majority (:func:`~vpl_jax.policies.balanced_log_weights`; adds
    ``"log_weights"``). Unconditioned policies ignore both.
    """
    entry = policy_method(method, model)
    P.check_user_sampling(user_sampling)
    train, _ = dataset.split()
    if entry.latent == "none":
        return {"params": params}
    if entry.latent == "theta":
        inputs = {"theta": train.users.theta}
        points = train.users.theta
    else:
        mean, var = R.posterior_moments(model, params, R.user_pairs(train, "context", model.inputs))
        inputs = {"params": params, "mean": mean, "std": jnp.sqrt(var)}
        points = mean
    inputs["references"] = reference_states(model, dataset) if references is None else references
    log_weights = P.user_log_weights(points, user_sampling)
    if log_weights is not None:
        inputs["log_weights"] = log_weights
    return inputs


def test_latents(method: str, model, params, dataset: PreferenceDataset) -> jax.Array:
    """f32[U_test, Z]: what the policy is conditioned on for each test user — the true
    ``theta`` (oracle), the posterior mean given their context (latent models) or nothing."""
    entry = policy_method(method, model)
    _, test = dataset.split()
    if entry.latent == "theta":
        return test.users.theta
    if entry.latent == "none":
        return jnp.zeros((test.num_users, 0))
    mean, _ = R.posterior_moments(model, params, R.user_pairs(test, "context", model.inputs))
    return mean


def _stack(tree, runs: int):
    return jax.tree.map(lambda x: jnp.broadcast_to(x, (runs, *jnp.shape(x))), tree)


def check_policy_config(config: P.PPOConfig, env: FeatureEnv) -> None:
    """Raises ``ValueError`` unless PPO trains on the episodes the pipeline evaluates on.

    Evaluation (:meth:`PolicyTrainer.evaluate`) and on-policy segments (:func:`policy_segments`)
    act at every environment step for the task's ``episode_length``; a policy trained with
    another time limit or with repeated actions would be scored on a task it never saw.
    """
    if config.action_repeat != 1:
        raise ValueError(
            f"ppo.action_repeat={config.action_repeat}: must be 1 for the preference pipeline "
            f"(its policies are evaluated acting at every step)"
        )
    if config.episode_length not in (None, env.episode_length):
        raise ValueError(
            f"ppo.episode_length={config.episode_length}: must be unset or the task's "
            f"episode_length {env.episode_length} (policies are evaluated on whole task episodes)"
        )


class PolicyTrainer:
    """PPO on one method's training environment, compiled once and reused.

    The reward enters as an *argument* (the ``inputs`` of :func:`policy_env`), so every reward
    of the same shapes — a new round of the iterate loop, another point of a sweep — reuses the
    compiled update. R runs (a leading axis R on the keys and on every input) train in one
    ``vmap``; on a CPU that costs R times one run, but it compiles once and dispatches once per
    chunk. Inside :func:`vpl_jax.runtime.sharding.use_devices` the R runs are split across the
    devices (:func:`~vpl_jax.runtime.sharding.placement`).

    Args:
      env: the raw task.
      method: ``oracle``, ``vpl``, ``vpl_spo``, or any name for a model without a user latent.
      model: the reward model (None for the oracle).
      config: PPO's configuration.
      chunk_updates: PPO updates per jitted chunk (the progress bar advances between chunks).
      reward_scaling: per-user scaling of the policy's rewards (:func:`user_reward_scaling`;
        its inputs then need ``"references"``, :func:`policy_inputs`).
    """

    def __init__(
        self,
        env: FeatureEnv,
        method: str,
        model: R.RewardModel | None,
        config: P.PPOConfig,
        chunk_updates: int = 20,
        reward_scaling: str = DEFAULT_REWARD_SCALING,
    ):
        if chunk_updates < 1:
            raise ValueError(f"chunk_updates={chunk_updates}: must be >= 1")
        check_policy_config(config, env)
        user_reward_scaling(method, model, reward_scaling)  # a bad choice fails here
        self.reward_scaling = reward_scaling
        self.env, self.method, self.model = env, method, model
        self.config, self.chunk_updates = config, chunk_updates
        self._acting: P.PPO | None = None

        def ppo(inputs) -> P.PPO:
            return P.make_train(policy_env(method, env, model, inputs, self.reward_scaling), config)

        self._ppo = ppo
        self._init = jax.jit(jax.vmap(lambda k, inputs: ppo(inputs).init(k)))

        @functools.partial(jax.jit, static_argnums=2)
        def chunk(states, inputs, n):
            run = lambda s, inp: ppo(inp).train_chunk(s, n)  # noqa: E731
            states, metrics = jax.vmap(run)(states, inputs)
            # run_chunked concatenates metrics along their leading (update) axis: [n, R, ...].
            return states, jax.tree.map(lambda m: jnp.moveaxis(m, 0, 1), metrics)

        self._chunk = chunk

    def acting(self, inputs: dict | None = None) -> P.PPO:
        """A :class:`~vpl_jax.policies.PPO` of this trainer for acting and evaluating (its
        ``act`` and ``value`` do not depend on the reward). Built once, from the first inputs,
        so that jitted consumers keyed on ``act`` compile once."""
        if self._acting is None:
            if inputs is None:
                raise ValueError("PolicyTrainer.acting needs inputs before the first train()")
            self._acting = self._ppo(inputs)
        return self._acting

    def train(
        self,
        keys: jax.Array,
        inputs: dict,
        desc: str = "PPO",
        checkpointer: Checkpointer | None = None,
    ) -> tuple[P.RunnerState, Any]:
        """R runs: ``keys`` with a leading axis R and ``inputs`` whose leaves lead with R.

        With a ``checkpointer`` (its interval a multiple of ``chunk_updates``) the runs save
        their state between chunks and a repeated call resumes from the last checkpoint.
        Returns ``(states, history)``; states lead with R, history with ``[updates, R]``.
        Raises :class:`~vpl_jax.checks.TrainingDivergedError` after the first chunk in which a
        run's PPO loss is NaN or inf.
        """
        scaling = user_reward_scaling(self.method, self.model, self.reward_scaling)
        if scaling != "none" and inputs.get("references") is None:
            raise ValueError(
                f"PolicyTrainer(reward_scaling={self.reward_scaling!r}) scales each user's "
                f"rewards by {scaling!r} against reference steps: its inputs need "
                "'references' (pipeline.policy_inputs attaches them; "
                "pipeline.reference_states draws them), or pass reward_scaling='none'"
            )
        self.acting(jax.tree.map(lambda x: x[0], inputs))
        place = sharding.placement(keys.shape[0])
        keys, inputs = place.split((keys, inputs))

        def chunk(states, n):
            states, metrics = self._chunk(states, inputs, n)
            return states, place.gather(metrics)

        states, history = P.train_chunked(
            lambda: self._init(keys, inputs),
            chunk,
            total=self.config.num_updates,
            chunk_size=self.chunk_updates,
            checkpointer=checkpointer,
            desc=desc,
        )
        return place.gather(states), history

    def train_one(
        self,
        key: jax.Array,
        inputs: dict,
        desc: str = "PPO",
        checkpointer: Checkpointer | None = None,
    ) -> P.RunnerState:
        """One run (no leading axis on ``key``, ``inputs`` or the returned state)."""
        states, _ = self.train(key[None], _stack(inputs, 1), desc, checkpointer)
        return jax.tree.map(lambda x: x[0], states)

    def evaluate(
        self, state: P.RunnerState, z: jax.Array, theta: jax.Array, key: jax.Array, episodes: int
    ) -> P.Evaluation:
        """Per-user evaluation (:func:`~vpl_jax.policies.evaluate`) of one run acting on
        ``z: f32[U, Z]``, scored with ``theta: f32[U, F]``."""
        ppo = self.acting()
        return P.evaluate(self.env, ppo.act, ppo.policy_params(state), z, theta, key, episodes)

    def segment_values(self, state: P.RunnerState, segments: Segments, z: jax.Array) -> jax.Array:
        """f32[U, N, 2]: one run's critic (:func:`~vpl_jax.policies.critic_values`, in reward
        units) at the start and end of each of the N ``segments``, conditioned on each user's
        ``z: f32[U, Z]`` — for the oracle (``z = theta``, ``reward_scaling="none"``) each
        user's ``(V*(start), V*(end))``, what regret-based labellers compare
        (:func:`~vpl_jax.users.segment_values`)."""
        ppo = self.acting()
        critic = lambda x: P.critic_values(ppo, state, x)  # noqa: E731
        return jax.jit(segment_values, static_argnums=0)(critic, segments, z)

    def segments(
        self, state: P.RunnerState, z: jax.Array, key: jax.Array, episodes: int, horizon: int
    ) -> Segments:
        """Segments of ``horizon`` steps from ``episodes`` stochastic rollouts of one run, each
        episode conditioned on a row of ``z: f32[N, Z]`` drawn uniformly."""
        ppo = self.acting()
        return policy_segments(
            self.env, ppo.act, ppo.policy_params(state), z, key, episodes, horizon
        )


def policy_curves(
    trainer: PolicyTrainer,
    states: P.RunnerState,
    latents: jax.Array,
    theta: jax.Array,
    key: jax.Array,
    episodes: int,
) -> P.Evaluation:
    """S runs of a latent-conditioned policy, each acting on each user's latent after every
    number of queries (e.g. an elicitation trace's posterior means,
    :attr:`vpl_jax.active.Trace.latent_mean`): what asking buys in behaviour.

    Args:
      trainer: the :class:`PolicyTrainer` that trained the runs.
      states: S runs (leading axis S, as :meth:`PolicyTrainer.train` returns them).
      latents: f32[S, U, R+1, Z] — run s acts on ``latents[s]``: user u's latent after the r-th
        number of queries.
      theta: f32[U, F] the users' true weights, which score every evaluation.
      key: the evaluation key (the same for every run and number of queries).
      episodes: evaluation episodes per user and number of queries (deterministic policy).

    Returns:
      An :class:`~vpl_jax.policies.Evaluation` with leading axes [S, R+1, U] (numpy).
    """
    z = np.asarray(latents)  # [S, U, R+1, Z]
    num_seeds, num_users, num_points, _ = z.shape
    z = np.swapaxes(z, 1, 2).reshape(num_seeds, num_points * num_users, -1)
    theta = np.tile(np.asarray(theta), (num_points, 1))  # [(R+1) U, F], rounds major
    ppo = trainer.acting()

    def one(state, z_s):
        act_params = ppo.policy_params(state)
        return P.evaluate(trainer.env, ppo.act, act_params, z_s, theta, key, episodes)

    ev = jax.vmap(one)(states, z)
    return jax.tree.map(
        lambda x: np.asarray(x).reshape(num_seeds, num_points, num_users, *x.shape[2:]), ev
    )


@functools.partial(jax.jit, static_argnames=("env", "act", "num_episodes", "horizon"))
def policy_segments(
    env: FeatureEnv,
    act,
    policy_params: Any,
    z: jax.Array,
    key: jax.Array,
    num_episodes: int,
    horizon: int,
) -> Segments:
    """Segments cut from a trained policy's own rollouts (stochastic actions).

    Args:
      env: the raw task.
      act: ``act(policy_params, obs: f32[O + Z], key) -> f32[A]`` (e.g. ``PPO.act``).
      policy_params: the policy's parameters.
      z: f32[N, Z] latents; each episode conditions on a uniformly drawn row (``Z = 0`` for an
        unconditioned policy).
      key: PRNG key. num_episodes: episodes. horizon: H, steps per segment.
    """
    policy = P.latent_policy(
        act, policy_params, lambda k: z[jax.random.randint(k, (), 0, z.shape[0])]
    )
    keys = jax.random.split(key, num_episodes)
    _, traj = jax.vmap(lambda k: rollout_episode(env, policy, k, env.episode_length))(keys)
    return cut_segments(traj, horizon)


def train_oracle(
    env: FeatureEnv,
    config: P.PPOConfig,
    chunk_updates: int,
    dataset: PreferenceDataset,
    key: jax.Array,
    *,
    desc: str = "oracle PPO",
    checkpointer: Checkpointer | None = None,
) -> tuple[PolicyTrainer, P.RunnerState, Any]:
    """PPO on every user's true reward ``theta · phi``, conditioned on ``theta`` (each episode
    draws one of the dataset's users, training and test alike, uniformly): its returns are the
    test users' reference, its critic each user's ``V*`` (:meth:`PolicyTrainer.segment_values`).
    One run for a single ``key``; S runs (seeds) in one ``vmap`` for S keys (``key: [S, 2]``,
    or typed keys ``[S]``), run s as a single-key call with ``key[s]`` trains it (to float
    rounding).

    Returns ``(trainer, state, history)``: the oracle's :class:`PolicyTrainer` (to evaluate the
    runs and read their critics), the run's state (no leading axis; a leading S for S keys) and
    the training curves (``[updates, 1]``, or ``[updates, S]``; :meth:`PolicyTrainer.train`).
    """
    # Raw rewards (no per-user scaling): its critic is each user's V* in their own reward's
    # units, which regret-based labels compare with their returns.
    trainer = PolicyTrainer(env, "oracle", None, config, chunk_updates, reward_scaling="none")
    seeds = is_key_batch(as_raw_keys(key))
    keys = key if seeds else key[None]
    states, history = trainer.train(
        keys,
        {"theta": _stack(dataset.users.theta, len(keys))},
        desc=desc,
        checkpointer=checkpointer,
    )
    return trainer, states if seeds else jax.tree.map(lambda x: x[0], states), history


def oracle_returns(
    trainer: PolicyTrainer, states: P.RunnerState, theta: jax.Array, key: jax.Array, episodes: int
) -> np.ndarray:
    """``f32[S, U]``: the true return of each of S oracle runs (:func:`train_oracle` with S
    keys) acting for each user on their true ``theta: f32[U, F]`` — the users' reference; every
    run in one ``vmap`` (:func:`policy_curves` at a single number of queries)."""
    theta = np.asarray(theta)
    num_seeds = jax.tree.leaves(states)[0].shape[0]
    latents = np.broadcast_to(
        theta[None, :, None], (num_seeds, *theta.shape[:1], 1, theta.shape[1])
    )
    return policy_curves(trainer, states, latents, theta, key, episodes).true_return[:, 0]


def policies_on_rewards(
    trainer: PolicyTrainer,
    fits: list[tuple[Any, PreferenceDataset]],
    key: jax.Array,
    eval_key: jax.Array,
    episodes: int,
    *,
    seeds: int | None = None,
    desc: str = "PPO",
    checkpointer: Checkpointer | None = None,
) -> tuple[list[P.Evaluation], Any]:
    """One policy per learned reward: R PPO runs in one ``vmap`` (:meth:`PolicyTrainer.train`),
    each scored on its dataset's test users.

    Args:
      trainer: the :class:`PolicyTrainer` of the rewards' method and model.
      fits: R learned rewards ``(params, dataset)`` of the same shapes; run r trains on
        :func:`policy_inputs` of ``fits[r]`` (its defaults). With ``seeds = S``, each
        ``params`` leads with S seeds, and seed s of reward r is a run of its own.
      key: PPO's key, split into one key per run (run r trains with the r-th; with seeds, the
        runs are seed-major: run ``s * R + r`` is seed s of reward r).
      eval_key: the evaluation key, the same for every run.
      episodes: evaluation episodes per test user.
      seeds: S, the seeds each reward's ``params`` lead with (None: no seed axis).
      desc, checkpointer: as :meth:`PolicyTrainer.train`.

    Returns:
      ``(evaluations, history)``: R :class:`~vpl_jax.policies.Evaluation` (run r acting for
      each test user of ``fits[r]``'s dataset on its :func:`test_latents`, ``[U_test]``) and
      the runs' training curves (``[updates, R]``); with seeds, S lists of R evaluations (seed
      s's at ``evaluations[s]``) and curves ``[updates, S, R]``.
    """
    if seeds is not None:  # every seed of every reward, seed-major, as runs of their own
        runs = [(jax.tree.map(lambda x, s=s: x[s], params), data)
                for s in range(seeds) for params, data in fits]  # fmt: skip
        flat, history = policies_on_rewards(trainer, runs, key, eval_key, episodes, desc=desc,
                                            checkpointer=checkpointer)  # fmt: skip
        history = jax.tree.map(  # [updates, S * R] -> [updates, S, R]
            lambda x: np.asarray(x).reshape(x.shape[0], seeds, len(fits), *x.shape[2:]), history
        )
        return [flat[s * len(fits) : (s + 1) * len(fits)] for s in range(seeds)], history
    method, model = trainer.method, trainer.model
    inputs = [policy_inputs(method, model, params, data) for params, data in fits]
    states, history = trainer.train(
        jax.random.split(key, len(fits)),
        jax.tree.map(lambda *xs: jnp.stack(xs), *inputs),
        desc=desc,
        checkpointer=checkpointer,
    )
    evaluations = []
    for r, (params, data) in enumerate(fits):
        state = jax.tree.map(lambda x, r=r: x[r], states)
        z = test_latents(method, model, params, data)
        _, test = data.split()
        evaluations.append(trainer.evaluate(state, z, test.users.theta, eval_key, episodes))
    return evaluations, history


# --- the offline pipeline -------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class PipelineResult:
    """One pass of the offline pipeline.

    Attributes:
      reward: the trained reward (:class:`RewardFit`), None for the oracle.
      inputs: the policy's training inputs (:func:`policy_inputs`).
      state: the trained policy's runner state.
      z: f32[U_test, Z] what the policy acted on for each test user.
      policy: the test users' :class:`~vpl_jax.policies.Evaluation`.
    """

    reward: RewardFit | None
    inputs: dict
    state: P.RunnerState
    z: jax.Array
    policy: P.Evaluation

    @property
    def heldout_accuracy(self) -> float:
        return float("nan") if self.reward is None else self.reward.heldout_accuracy

    @property
    def true_return(self) -> float:
        """Mean over test users of their true return."""
        return float(np.mean(np.asarray(self.policy.true_return)))


def check_trainer(trainer: PolicyTrainer, method: str, model: R.RewardModel | None) -> None:
    """Raises ``ValueError`` unless ``trainer`` was built for ``method`` with ``model`` (the
    offline pipeline's check, for one seed or S)."""
    if trainer.method != method or trainer.model != model:
        raise ValueError(
            f"the policy trainer is for method {trainer.method!r}, not {method!r} with this model"
        )


def offline(
    key: jax.Array,
    dataset: PreferenceDataset,
    model: R.RewardModel | None,
    method: str,
    reward_train: R.TrainConfig,
    trainer: PolicyTrainer,
    num_eval_episodes: int,
    desc: str = "PPO",
    checkpointer: Checkpointer | None = None,
    user_sampling: str = DEFAULT_USER_SAMPLING,
    num_reference_states: int = 256,
) -> PipelineResult:
    """Reward on the training users -> PPO on it -> the test users' true returns.

    ``trainer`` must be built for the same method and model. Pure in ``key`` (the same key,
    data and configs give the same result). With a ``checkpointer`` PPO saves as it goes and a
    repeated call resumes it (:meth:`PolicyTrainer.train`). ``user_sampling``: how training
    episodes pick their user (:func:`policy_inputs`). A conditioned method's per-user reward
    scaling (``trainer.reward_scaling``; VPL-SPO's win probability) compares against
    ``num_reference_states`` steps of the dataset (:func:`reference_states`).
    """
    check_trainer(trainer, method, model)
    k_reward, k_policy, k_eval = jax.random.split(key, 3)
    reward = None
    params = None
    if policy_method(method, model).reward is not None:
        reward = fit_reward(model, reward_train, k_reward, dataset)
        params = reward.params
    references = None
    if not is_unconditioned(method, model):
        k_refs = named_key(key, "references")
        references = reference_states(model, dataset, k_refs, num_reference_states)
    inputs = policy_inputs(method, model, params, dataset, references, user_sampling)
    state = trainer.train_one(k_policy, inputs, desc, checkpointer)
    z = test_latents(method, model, params, dataset)
    _, test = dataset.split()
    evaluation = trainer.evaluate(state, z, test.users.theta, k_eval, num_eval_episodes)
    return PipelineResult(reward=reward, inputs=inputs, state=state, z=z, policy=evaluation)
