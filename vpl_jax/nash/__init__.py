"""Beyond a single reward: preference models, Nash-MD, and direct preference objectives."""
