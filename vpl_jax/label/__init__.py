"""A real person in the loop: a local Flask app that asks a person comparisons and stores answers.

* :mod:`~vpl_jax.label.app` — sessions, validated answers written atomically, the JSON API;
* :mod:`~vpl_jax.label.queries` — the next comparison, by information gain or at random;
* :mod:`~vpl_jax.label.policy` — "show my policy": the run's VPL policy on the person's z next
  to BTL's, from the same start;
* :mod:`~vpl_jax.label.runs` — what an experiment's run folder offers the app (its datasets, the
  trained models, saved with :func:`vpl_jax.rewards.save_model`, the trained policies, saved
  with :func:`vpl_jax.policies.files.save_policy`, and its registrations).

Flask was chosen because it is well kept, tiny, and ships a test client, so every endpoint is
tested at the HTTP level without a running server.
"""

from vpl_jax.label.app import ANSWERS, LabelStore, create_app, merge_people, person_dataset
from vpl_jax.label.queries import QUERY_CHOICES, QueryChooser
from vpl_jax.rewards.files import ModelFileError, load_model, save_model

__all__ = [
    "ANSWERS",
    "QUERY_CHOICES",
    "LabelStore",
    "ModelFileError",
    "QueryChooser",
    "create_app",
    "load_model",
    "merge_people",
    "person_dataset",
    "save_model",
]
