"""Preference data: rollouts, segments, query pairs, labels, per-user datasets."""

from vpl_jax.data.beliefs import (
    believed_features,
    believed_pair_features,
    perceived,
    relabel_deviating,
    shifted_hazard,
)
from vpl_jax.data.dataset import (
    DatasetConfig,
    DatasetFileError,
    DatasetMeta,
    PreferenceDataset,
    Queries,
    build_dataset,
    gather_features,
    generate,
    label_queries,
    load_dataset,
    relabel,
    repopulate,
    save_dataset,
)
from vpl_jax.data.rollouts import Trajectories, collect, rollout_episode
from vpl_jax.data.segments import Segments, cut_segments, first_occurrences, sample_pairs

__all__ = [
    "DatasetConfig",
    "DatasetFileError",
    "DatasetMeta",
    "PreferenceDataset",
    "Queries",
    "Segments",
    "Trajectories",
    "believed_features",
    "believed_pair_features",
    "build_dataset",
    "collect",
    "cut_segments",
    "first_occurrences",
    "gather_features",
    "generate",
    "label_queries",
    "load_dataset",
    "perceived",
    "relabel",
    "relabel_deviating",
    "repopulate",
    "rollout_episode",
    "sample_pairs",
    "save_dataset",
    "shifted_hazard",
]
