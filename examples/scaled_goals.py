"""Two navigation user types whose *learned* rewards differ in scale (the VPL-SPO claim).

    python experiments/underspecification.py --tasks navigation \
        --register examples/scaled_goals.py \
        --population navigation:goal_a=0.5,goal_b_noisy=0.5 --reward-scaling none \
        --methods oracle vpl vpl_spo --num-seeds 3

Pairwise labels fix a user's reward only up to scale, and the scale a reward model learns
follows how deterministic the labels are: ``goal_a``'s rational labels push its learned reward
far apart, ``goal_b_noisy``'s Boltzmann labels keep it small (beta = 0.2: a pair of median
return gap, 6.5, is answered right 4 times in 5). A policy trained on unscaled learned rewards
over both users' latents then sees mostly ``goal_a``'s advantages.
Importing this file registers ``goal_b_noisy`` for the ``navigation`` task.
"""

from vpl_jax.users import UserType, get_user_type, register_user_type

goal_b = get_user_type("navigation", "goal_b")
register_user_type(
    "navigation",
    UserType(
        "goal_b_noisy",
        dict(goal_b.weights),
        beta=0.2,
        description="wants goal b, labels with Boltzmann beta = 0.2 (a small learned reward)",
    ),
)
