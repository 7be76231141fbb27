"""What a person's answers so far say about them (the page's panel after every answer).

* ``theta`` — what they seem to care about: LinearBayes' Laplace posterior over linear reward
  weights from their answered pairs' features, mean and standard deviation by feature name. The
  prior is that of the loaded model when it is a (trained) LinearBayes, else N(0, I). Like every
  pairwise model, this theta is the person's weights times their rationality β.
* ``human_model`` — the human model that best explains their answers
  (:func:`~vpl_jax.users.fit_human_model`: β, ε and γ by maximum likelihood, with the
  log-likelihood ratio against the Boltzmann-rational labeller). θ's scale must come from
  somewhere, so the fit is done with each user type's mean θ in the dataset in turn and the type
  whose fit explains the answers best is reported (``type``), with every type's fit in
  ``per_type``.
* ``latent`` (with a VPL model) — the posterior over the person's z, and where it lies among the
  training users: each type's centroid of the training users' posterior means, the nearest type
  to the person's posterior mean, the share of the person's posterior samples nearest to
  each type, and a map: the training users' posterior means and the person's posterior samples
  on the training users' two principal axes.

Answers are padded to a power-of-two number of slots (masked), so the jitted computations compile
a handful of times over a session, not once per answer.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from vpl_jax.data.dataset import PreferenceDataset
from vpl_jax.label.queries import QueryChooser
from vpl_jax.rewards import VPL, LinearBayes, PairBatch, segment_bank, user_pairs
from vpl_jax.users import fit_human_model

#: Myopic discounts the human-model fit tries.
GAMMAS = (1.0, 0.95, 0.9, 0.8, 0.7)


def _finite(x) -> float | None:
    """A float for JSON: None for NaN or inf (JSON has neither)."""
    x = float(x)
    return x if math.isfinite(x) else None


def _slots(n: int) -> int:
    return max(8, 1 << max(n - 1, 0).bit_length())


def _answered(answers: list[dict]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(pairs: i32[K, 2], labels: f32[K], mask: bool[K])`` padded to K slots."""
    k = _slots(len(answers))
    pairs = np.zeros((k, 2), np.int32)
    labels = np.full(k, 0.5, np.float32)
    mask = np.zeros(k, bool)
    for i, a in enumerate(answers):
        pairs[i] = a["pair"]
        if a["label"] is not None:
            labels[i], mask[i] = a["label"], True
    return pairs, labels, mask


@functools.partial(jax.jit, static_argnums=0)
def _theta_moments(model: LinearBayes, params, context: PairBatch):
    q = model.posterior(params, context)
    return q.mean(), jnp.sqrt(q.variance())


def theta_posterior(
    dataset: PreferenceDataset, answers: list[dict], model=None, params=None
) -> dict:
    """``{"features", "mean", "std"}``: LinearBayes' posterior over θ given ``answers``."""
    if not isinstance(model, LinearBayes):
        model = LinearBayes()
        params = model.prior_params(len(dataset.meta.feature_names))
    pairs, labels, mask = _answered(answers)
    bank = segment_bank(dataset.segments, "features")
    context = PairBatch(
        inputs_a=bank.inputs[pairs[:, 0]],
        inputs_b=bank.inputs[pairs[:, 1]],
        alive_a=bank.alive[pairs[:, 0]],
        alive_b=bank.alive[pairs[:, 1]],
        labels=jnp.asarray(labels),
        mask=jnp.asarray(mask),
    )
    mean, std = _theta_moments(model, params, context)
    return {
        "features": list(dataset.meta.feature_names),
        "mean": [_finite(x) for x in np.asarray(mean)],
        "std": [_finite(x) for x in np.asarray(std)],
    }


def type_thetas(dataset: PreferenceDataset) -> dict[str, np.ndarray]:
    """``{type name: f32[F]}``: the mean θ of the dataset's users of each type (types without
    users, such as ``human``, are left out)."""
    theta = np.asarray(dataset.users.theta)
    type_id = np.asarray(dataset.users.type_id)
    return {
        name: theta[type_id == t].mean(axis=0)
        for t, name in enumerate(dataset.meta.type_names)
        if np.any(type_id == t) and name != "human"
    }


def human_model_summary(dataset: PreferenceDataset, answers: list[dict]) -> dict | None:
    """The best-fitting human model over the dataset's user types (module docstring); None
    without a user type."""
    pairs, labels, mask = _answered(answers)
    features = np.asarray(dataset.segments.features)
    fa, fb = jnp.asarray(features[pairs[:, 0]]), jnp.asarray(features[pairs[:, 1]])
    fits = {
        name: fit_human_model(theta, fa, fb, labels, mask, GAMMAS)
        for name, theta in type_thetas(dataset).items()
    }
    if not fits:
        return None
    best = max(fits, key=lambda name: fits[name].log_likelihood)

    def as_json(fit):
        return {k: _finite(v) if isinstance(v, float) else v for k, v in fit._asdict().items()}

    return {
        "type": best,
        **as_json(fits[best]),
        "per_type": {n: as_json(f) for n, f in fits.items()},
    }


def _moments(model: VPL, params, context: PairBatch) -> tuple[jax.Array, jax.Array]:
    """``(mean, std)`` of VPL's diagonal Gaussian q(z | context)."""
    q = model.posterior(params, context)
    return q.mean(), q.stddev()


class LatentMap:
    """The training users' posterior means under a VPL model, by type (computed once).

    Attributes:
      type_names: the types with training users, in dataset order.
      centroids: f32[T, Z] each type's mean of its training users' posterior means.
      means: f32[U, Z] every training user's posterior mean; type_id: i32[U] their types.
    """

    def __init__(self, dataset: PreferenceDataset, model: VPL, params, chooser: QueryChooser):
        train, _ = dataset.split()
        context = user_pairs(train, "context", model.inputs).batch()
        self._moments = jax.jit(lambda p, c: _moments(model, p, c))
        self.means = np.asarray(self._moments(params, context)[0])
        self.type_id = np.asarray(train.users.type_id)
        present = [t for t in range(len(dataset.meta.type_names)) if np.any(self.type_id == t)]
        self.type_names = [dataset.meta.type_names[t] for t in present]
        self.user_type = [present.index(int(t)) for t in self.type_id]  # into type_names
        self.centroids = np.stack([self.means[self.type_id == t].mean(0) for t in present])
        # The map's plane: the training users' two principal axes (padded for Z = 1).
        self.center = self.means.mean(0)
        _, _, vt = np.linalg.svd(self.means - self.center, full_matrices=False)
        self.axes = np.zeros((2, self.means.shape[1]), np.float32)
        self.axes[: min(2, len(vt))] = vt[:2]
        self.model, self.params, self.chooser = model, params, chooser

    def project(self, z: np.ndarray) -> list:
        """``z: f32[..., Z]`` on the map's plane, rounded, as nested lists ``[..., 2]``."""
        return ((np.asarray(z) - self.center) @ self.axes.T).round(4).tolist()

    def moments(self, answers: list[dict]) -> tuple[np.ndarray, np.ndarray]:
        """``(mean, std)``, each f32[Z]: the person's posterior over z given ``answers``."""
        context, _, _ = self.chooser.context(answers)
        mean, std = self._moments(self.params, context)
        return np.asarray(mean), np.asarray(std)

    def place(self, person: str, answers: list[dict], num_samples: int = 256) -> dict:
        """The person's posterior over z and their nearest type (module docstring)."""
        mean, std = self.moments(answers)
        key = self.chooser.key(person, len(answers))
        z = mean + std * np.asarray(jax.random.normal(key, (num_samples, mean.shape[-1])))
        nearest = np.argmin(((z[:, None] - self.centroids[None]) ** 2).sum(-1), axis=1)
        share = np.bincount(nearest, minlength=len(self.type_names)) / num_samples
        best = int(np.argmin(((mean - self.centroids) ** 2).sum(-1)))
        return {
            "mean": mean.tolist(),
            "std": std.tolist(),
            "nearest_type": self.type_names[best],
            "share": dict(zip(self.type_names, share.tolist(), strict=True)),
            "type_names": self.type_names,
            "centroids": self.centroids.tolist(),
            # The latent map: training users' posterior means and the person's posterior
            # samples on the training users' two principal axes.
            "map": {
                "users": self.project(self.means),
                "user_type": self.user_type,
                "samples": self.project(z[:64]),
                "mean": self.project(mean),
            },
        }
