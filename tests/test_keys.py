"""PRNG keys named by strings: a name's key does not depend on where the name stands."""

import zlib

import chex
import jax

from vpl_jax import active
from vpl_jax.keys import name_hash, named_key


def test_a_criterions_key_does_not_depend_on_the_tuple_order():
    key = jax.random.PRNGKey(0)
    keys = {c: named_key(key, c) for c in active.CRITERIA}
    reordered = {c: named_key(key, c) for c in reversed(active.CRITERIA)}
    chex.assert_trees_all_equal(keys, reordered)
    assert len({tuple(k.tolist()) for k in keys.values()}) == len(active.CRITERIA)


def test_name_hash_is_crc32_in_31_bits_and_jittable():
    assert name_hash("random") == zlib.crc32(b"random") & 0x7FFFFFFF
    key = jax.random.PRNGKey(3)
    chex.assert_trees_all_equal(
        jax.jit(named_key, static_argnums=1)(key, "info_gain"),
        jax.random.fold_in(key, name_hash("info_gain")),
    )
