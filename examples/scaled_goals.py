"""Two navigation user types whose *learned* rewards differ in scale (the VPL-SPO claim).

    python experiments/underspecification.py --tasks navigation \
        --register examples/scaled_goals.py \
        --population navigation:goal_a=0.5,goal_b_noisy=0.5 --reward-scaling none \
        --methods vpl vpl_spo --num-seeds 3

Pairwise labels fix a user's reward only up to scale, and the scale a reward model learns
follows how deterministic the labels are: ``goal_a``'s rational labels push its learned reward
far apart, while ``goal_b_noisy`` flips one answer in five at random (epsilon = 0.2), which
caps the log-odds any pair can earn near log(0.8 / 0.2) = 1.4 and so keeps its learned reward
small, with the same ranking as goal b's. A policy trained on unscaled learned rewards over both
users' latents then sees mostly ``goal_a``'s advantages. (Boltzmann noise, beta = 0.2, makes the
reward both small and wrong on pairs of small return gap: there VPL-SPO fails the type too.)
Importing this file registers ``goal_b_noisy`` for the ``navigation`` task.
"""

from vpl_jax.users import UserType, get_user_type, register_user_type

goal_b = get_user_type("navigation", "goal_b")
register_user_type(
    "navigation",
    UserType(
        "goal_b_noisy",
        dict(goal_b.weights),
        epsilon=0.2,
        description="wants goal b, flips one answer in five (a small learned reward)",
    ),
)
