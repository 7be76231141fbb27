"""Active query selection: ask each user the comparisons that tell the most about them.

* :mod:`~vpl_jax.active.acquisition` — scores from per-particle probabilities (information gain,
  volume removal, disagreement, random) and diverse batch selection;
* :mod:`~vpl_jax.active.beliefs` — what a trained model (VPL, LinearBayes, BTL ensemble) believes
  about one user, as weighted particles over a candidate pool;
* :mod:`~vpl_jax.active.elicitation` — the criteria by name, one selection round, and the
  elicitation loop (one ``lax.scan`` per user, every user × seed under one ``jit``);
* :mod:`~vpl_jax.active.features` — candidates and simulated users from a plain feature matrix
  and a theta matrix (no task, no dataset), for a LinearBayes belief;
* :mod:`~vpl_jax.active.evaluation` — mean accuracy curves and the queries a criterion needs
  to match random's accuracy (:func:`queries_to_match`; as results rows :func:`match_rows`, as
  markdown :func:`match_table` and :func:`accuracy_table`), a trace's curves by metric name;
* :mod:`~vpl_jax.active.uncertainty` — posterior spread against error, and calibration
  (:func:`uncertainty_report`: both after every number of queries of a trace; as results rows
  :func:`uncertainty_rows`, as markdown :func:`uncertainty_table`);
* :mod:`~vpl_jax.active.figures` — accuracy, a policy's success and the uncertainty report
  against the number of queries (needs matplotlib; not imported here).

::

    _, test = dataset.split()
    belief = make_belief(model)                     # model trained with rewards.fit (S seeds)
    cands = candidates(dataset, model.inputs)       # the shared query pool
    heldout = user_pairs(test, "heldout", model.inputs).batch()
    trace = elicit_users(belief, "info_gain", params, cands, test.users, heldout, key,
                         num_rounds=8, seeds=True, exclude=test.heldout.pairs)
    trace.accuracy                                  # f32[S, U, 9]: after 0..8 queries
    trace = elicit_test_users(dataset, model, params, "info_gain", key, num_rounds=8)  # the same

From plain features ``f32[N, F]`` and true weights ``theta: f32[U, F]`` (no held-out set: only
the alignment with theta is measured)::

    model = LinearBayes.for_beta(2.0)
    cands = candidates_from_features(features)
    users = users_from_theta(theta, HumanModel.create(beta=2.0))
    trace = elicit_users(make_belief(model), "mutual_info_theta", model.prior_params(F), cands,
                         users, None, key, num_rounds=10)
    trace.alignment                                 # f32[U, 11]
"""

from vpl_jax.active.acquisition import (
    binary_entropy,
    disagreement,
    information_gain,
    random_scores,
    select_batch,
    volume_removal,
)
from vpl_jax.active.beliefs import (
    BELIEFS,
    Belief,
    Candidates,
    EnsembleBelief,
    LatentBelief,
    candidate_logits,
    candidates,
    has_belief,
    make_belief,
    particle_probs,
    register_belief,
)
from vpl_jax.active.elicitation import (
    CRITERIA,
    Acquisition,
    Trace,
    ask,
    criteria_for,
    elicit,
    elicit_test_users,
    elicit_users,
    expected_entropy_reduction,
    heldout_accuracy,
    score_candidates,
    select_queries,
)
from vpl_jax.active.evaluation import (
    accuracy_table,
    curve_metrics,
    match_rows,
    match_table,
    match_text,
    mean_curve,
    needed_text,
    queries_to_match,
    queries_to_reach,
)
from vpl_jax.active.features import candidates_from_features, users_from_theta
from vpl_jax.active.uncertainty import (
    Calibration,
    UncertaintyReport,
    calibration_curve,
    spread_error_correlation,
    uncertainty_report,
    uncertainty_rows,
    uncertainty_table,
)

__all__ = [
    "BELIEFS",
    "CRITERIA",
    "Acquisition",
    "Belief",
    "Calibration",
    "Candidates",
    "EnsembleBelief",
    "LatentBelief",
    "Trace",
    "UncertaintyReport",
    "accuracy_table",
    "ask",
    "binary_entropy",
    "calibration_curve",
    "candidate_logits",
    "candidates",
    "candidates_from_features",
    "criteria_for",
    "curve_metrics",
    "disagreement",
    "elicit",
    "elicit_test_users",
    "elicit_users",
    "expected_entropy_reduction",
    "has_belief",
    "heldout_accuracy",
    "information_gain",
    "make_belief",
    "match_rows",
    "match_table",
    "match_text",
    "mean_curve",
    "needed_text",
    "particle_probs",
    "queries_to_match",
    "queries_to_reach",
    "random_scores",
    "register_belief",
    "score_candidates",
    "select_batch",
    "select_queries",
    "spread_error_correlation",
    "uncertainty_report",
    "uncertainty_rows",
    "uncertainty_table",
    "users_from_theta",
    "volume_removal",
]
