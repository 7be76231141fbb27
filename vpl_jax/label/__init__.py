"""A real person in the loop: a local Flask app that asks a person comparisons and stores answers.

Flask was chosen because it is well kept, tiny, and ships a test client, so every endpoint is
tested at the HTTP level without a running server.
"""

from vpl_jax.label.app import ANSWERS, LabelStore, create_app, person_dataset

__all__ = ["ANSWERS", "LabelStore", "create_app", "person_dataset"]
