"""Presearch's pair table: the C one (``_keypairs``) and its Python twin pass the same tests,
and both agree with a brute-force answer on random tables and items."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from newswatch.matcher import keypairs
from newswatch.matcher.keypairs import PairTable, PyKeyPairs, Triple
from tests.support.native import c_module

Build = Callable[[Sequence[Triple]], PairTable]


def _c_table() -> Build:
    build: Build = c_module("_keypairs", "the Python pair table").KeyPairs
    return build


@pytest.fixture(params=["python", "c"])
def build(request: pytest.FixtureRequest) -> Build:
    return PyKeyPairs if request.param == "python" else _c_table()


def expected(triples: Sequence[Triple], keys: set[str]) -> Counter[int]:
    """Brute force: every pair whose two keys the item has, once per pair."""
    return Counter(id_ for first, second, id_ in triples if first in keys and second in keys)


def test_a_pair_needs_both_keys(build: Build) -> None:
    table = build([("korea", "troop", 1), ("korea", "missil", 2), ("kursk", "kursk", 3)])
    assert table.probe({"korea", "troop", "north"}) == [1]
    assert sorted(table.probe({"korea", "troop", "missil"})) == [1, 2]
    assert table.probe({"troop", "missil"}) == []  # the second keys alone lead nowhere
    assert table.probe({"kursk"}) == [3]  # a key paired with itself: the key alone
    assert table.probe(set()) == []


def test_size_and_first_keys(build: Build) -> None:
    table = build([("a", "b", 0), ("a", "c", 1), ("d", "d", 2)])
    assert len(table) == 3
    assert table.firsts == 2
    empty = build([])
    assert len(empty) == 0 and empty.probe({"a"}) == []


def test_several_key_sets_are_one_item(build: Build) -> None:
    table = build([("korea", "troop", 7)])
    assert table.probe({"korea"}, {"troop"}) == [7]
    assert table.probe({"korea"}, ["troop", "troop"]) == [7]  # a key twice counts once


def test_an_id_comes_once_per_pair(build: Build) -> None:
    table = build([("a", "b", 5), ("a", "c", 5), ("x", "b", 5)])
    assert sorted(table.probe({"a", "b", "c", "x"})) == [5, 5, 5]


def test_an_item_with_many_keys(build: Build) -> None:
    """Past the C table's stack buffers (512 keys): the same answer from the heap."""
    keys = {f"w{i}" for i in range(5000)}
    table = build([("w1", "w4999", 1), ("w2", "absent", 2), ("w3000", "w3000", 3)])
    assert sorted(table.probe(keys)) == [1, 3]


def test_bad_input_is_named(build: Build) -> None:
    with pytest.raises(OverflowError, match="pair 1"):
        build([("a", "b", 1), ("a", "b", 2**32)])
    with pytest.raises((OverflowError, ValueError)):
        build([("a", "b", -1)])
    with pytest.raises((TypeError, ValueError)):
        build([("a", "b")])  # type: ignore[list-item]
    with pytest.raises(TypeError):
        build([("a", "b", 1)]).probe({"a"}, 3)  # type: ignore[arg-type]


def test_the_c_table_is_immutable() -> None:
    table = _c_table()([("a", "b", 1)])
    with pytest.raises(TypeError, match="immutable"):
        table.__init__([("x", "y", 2)])  # type: ignore[misc]
    assert table.probe({"a", "b"}) == [1]


_keys = st.text(alphabet="abcde", min_size=1, max_size=3)
_triples = st.lists(st.tuples(_keys, _keys, st.integers(0, 2**32 - 1)), max_size=60)


@settings(max_examples=300, deadline=None)
@given(_triples, st.sets(_keys, max_size=40))
def test_the_table_agrees_with_brute_force(triples: list[Triple], keys: set[str]) -> None:
    """Both tables against the brute-force answer (the C one compares hashes only: with
    64-bit hashes of short distinct strings a collision would be a bug, not luck)."""
    want = expected(triples, keys)
    assert Counter(PyKeyPairs(triples).probe(keys)) == want
    if keypairs.PAIRS_IN_C:
        assert Counter(_c_table()(triples).probe(keys)) == want


def test_presearch_uses_the_c_table_when_built() -> None:
    table = keypairs.pair_table([("a", "b", 1)])
    assert isinstance(table, PyKeyPairs) != keypairs.PAIRS_IN_C
