"""Simulated users: reward weights over task features, human models, populations."""

from vpl_jax.users import types as _builtin_types  # noqa: F401  (registers the shipped types)
from vpl_jax.users.fit import HumanModelFit, fit_human_model
from vpl_jax.users.human import (
    HumanModel,
    LabelDistribution,
    boltzmann,
    check_partial_return,
    label_distribution,
    sample_label,
    segment_return,
    segment_score,
)
from vpl_jax.users.labels import (
    label_pairs,
    pair_label_distribution,
    true_returns,
    type_disagreement,
)
from vpl_jax.users.population import (
    DEVIATIONS,
    Population,
    User,
    UserType,
    deviating,
    get_user_type,
    register_user_type,
    user_types,
)
from vpl_jax.users.spec import PopulationSpec, parse_population, population_from_spec
from vpl_jax.users.values import segment_endpoints, segment_values

__all__ = [
    "DEVIATIONS",
    "HumanModel",
    "HumanModelFit",
    "LabelDistribution",
    "Population",
    "PopulationSpec",
    "User",
    "UserType",
    "boltzmann",
    "check_partial_return",
    "deviating",
    "fit_human_model",
    "get_user_type",
    "label_distribution",
    "label_pairs",
    "pair_label_distribution",
    "parse_population",
    "population_from_spec",
    "register_user_type",
    "sample_label",
    "segment_endpoints",
    "segment_return",
    "segment_score",
    "segment_values",
    "true_returns",
    "type_disagreement",
    "user_types",
]
