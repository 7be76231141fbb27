"""The user types shipped with each task (registered on import of :mod:`vpl_jax.users`).

Weights are over each task's features (all on one per-step scale in [-1, 1]; see ``envs/``).
Human-model fields default to the rational user; experiments override them per population.
"""

from __future__ import annotations

from vpl_jax.users.population import UserType, register_user_type

_NAVIGATION = [
    *(
        UserType(
            f"goal_{g}",
            {f"progress_{g}": 1.0, "safety": 0.3, "courtesy": 0.3, "comfort": 0.05},
            description=f"wants to reach goal {g}, mildly careful",
        )
        for g in "abcd"
    ),
    UserType(
        "cautious",
        {"progress_a": 0.5, "safety": 2.0, "courtesy": 2.0, "comfort": 0.2},
        description="wants goal a but never at the cost of the hazard or the bystander",
    ),
    UserType(
        "hurried",
        {"progress_a": 1.0},
        description="wants goal a as fast as possible, whatever is in the way",
    ),
    # A Condorcet cycle over three goals (experiments/nash.py): each type ranks the goals in a
    # rotated order, so with equal shares a majority prefers a to b, b to c and c to a. At a
    # goal the progress to the other two is -0.73, so a type values goal g at
    # 1.73 w_g - 0.73 sum(w). With weights (1, 0.9, -0.4) every type likes its first and second
    # goals better than the centre (0.63, 0.46 > 0) and no place in the arena beats the uniform
    # lottery over the goals; with (1, 0.5, 0) every type would prefer the centre to its second
    # goal, which would make "stay in the middle" the majority's choice instead of a cycle.
    *(
        UserType(
            f"cycle_{order}",
            {f"progress_{g}": w for g, w in zip(order, (1.0, 0.9, -0.4), strict=True)},
            description=f"ranks the goals {' > '.join(order)} (one third of a Condorcet cycle)",
        )
        for order in ("abc", "bca", "cab")
    ),
]

_HIGHWAY = [
    UserType(
        "aggressive",
        {"efficiency": 1.0, "safety": 0.2},
        description="fast, close gaps, ignores law and others",
    ),
    UserType(
        "cautious",
        {"safety": 1.0, "efficiency": 0.2, "law": 0.5, "comfort": 0.5},
        description="keeps distance and drives smoothly",
    ),
    UserType(
        "lawful",
        {"law": 1.0, "safety": 0.5, "efficiency": 0.3},
        description="keeps the lane and the speed limit",
    ),
    UserType(
        "courteous",
        {"courtesy": 1.0, "safety": 0.5, "efficiency": 0.3},
        description="never forces others to brake",
    ),
]

_LOCOMOTION = [
    UserType(name, {axis: sign, "safety": 0.5, "comfort": 0.1}, description=f"walk {name}")
    for name, axis, sign in [
        ("forward", "velocity_x", 1.0),
        ("backward", "velocity_x", -1.0),
        ("left", "velocity_y", 1.0),
        ("right", "velocity_y", -1.0),
    ]
]

for _task, _types in [
    ("navigation", _NAVIGATION),
    ("highway", _HIGHWAY),
    ("locomotion", _LOCOMOTION),
]:
    for _t in _types:
        register_user_type(_task, _t)
