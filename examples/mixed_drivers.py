"""Three driving user types that each weigh several features (none one-hot, none shipped).

    python experiments/reward_accuracy.py --register examples/mixed_drivers.py --tasks highway \
        --population highway:commuter=0.7,considerate=0.2,stickler=0.1

Importing this file registers the types for the ``highway`` task (and every variant of it).
"""

from vpl_jax.users import UserType, register_user_type

for user_type in (
    UserType(
        "commuter",
        {"efficiency": 1.0, "safety": 0.6, "law": 0.3, "comfort": 0.2},
        description="gets there fast, without taking real risks",
    ),
    UserType(
        "considerate",
        {"courtesy": 1.0, "comfort": 0.8, "safety": 0.8, "efficiency": 0.2},
        description="never makes others brake, drives smoothly",
    ),
    UserType(
        "stickler",
        {"law": 1.0, "safety": 0.5, "comfort": 0.4, "efficiency": 0.3},
        description="keeps the lane and the limit first",
    ),
):
    register_user_type("highway", user_type)
