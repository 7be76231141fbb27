"""Three driving user types whose trade-offs pull against each other (none one-hot, none shipped).

    python experiments/underspecification.py --register examples/opposed_drivers.py \
        --tasks highway --population highway:rusher=0.7,sunday=0.2,by_the_book=0.1

The majority wants speed; the 20 % minority would rather go slowly and smoothly (it counts
efficiency against a segment); the 10 % one keeps the rules and lets others be. A second
mixed-weight population beside ``mixed_drivers.py``, for checking a change on users it was not
designed for. Measured once (``--weight-noise 0.1 --num-seeds 3``, cpu preset, true returns per
test user): the oracle policy scores rusher 27.4, sunday -25.9, by_the_book 0.0, and VPL's
(vpl_spo) 27.5 / -19.8 / -0.4 — even a policy given every user's true weights serves the slow
minority poorly, so this population exposes the open policy gap of issue 14. Importing this file
registers the types for the ``highway`` task (and every variant of it).
"""

from vpl_jax.users import UserType, register_user_type

for user_type in (
    UserType(
        "rusher",
        {"efficiency": 1.0, "safety": 0.4, "comfort": 0.1},
        description="as fast as the traffic allows",
    ),
    UserType(
        "sunday",
        {"comfort": 1.0, "safety": 0.8, "courtesy": 0.4, "efficiency": -0.4},
        description="slow and smooth, in no hurry at all",
    ),
    UserType(
        "by_the_book",
        {"law": 1.0, "courtesy": 0.5, "safety": 0.5, "efficiency": 0.2},
        description="keeps the lane and the limit, never makes others brake",
    ),
):
    register_user_type("highway", user_type)
