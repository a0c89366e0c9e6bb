"""Host patterns as Ansible reads them: groups, hosts, all, unions (``:`` and ``,``),
intersections (``&``), exclusions (``!``), globs and subscripts; results in inventory
order. The property test checks the set algebra on random inventories."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.fleet.patterns import PatternError, match, split, work

HOSTS = ["bastion", "web1", "web2", "web3", "db1", "db2", "lab-a"]
GROUPS = {
    "all": frozenset(HOSTS),
    "ungrouped": frozenset({"bastion"}),
    "web": frozenset({"web1", "web2", "web3"}),
    "db": frozenset({"db1", "db2"}),
    "prod": frozenset({"web1", "web2", "db1"}),
    "webcanary": frozenset({"web3"}),
    "lab": frozenset({"lab-a"}),
}


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("web", ["web1", "web2", "web3"]),
        ("all", HOSTS),
        ("*", HOSTS),
        ("db2", ["db2"]),
        ("db:web", ["web1", "web2", "web3", "db1", "db2"]),  # inventory order, not the pattern's
        ("db,web", ["web1", "web2", "web3", "db1", "db2"]),
        ("db, web1", ["web1", "db1", "db2"]),
        ("web:&prod", ["web1", "web2"]),
        ("prod:!web", ["db1"]),
        ("!web:prod", ["db1"]),  # plain terms first, then & and ! whatever the order
        ("web:db:&prod:!web2", ["web1", "db1"]),
        ("!prod", ["bastion", "web3", "db2", "lab-a"]),  # only ! or &: from all
        ("&db", ["db1", "db2"]),
        ("web*", ["web1", "web2", "web3"]),  # groups web and webcanary, hosts web1-3
        ("*canary", ["web3"]),
        ("db?", ["db1", "db2"]),
        ("web[1-2]", ["web1", "web2"]),  # a glob's character class
        ("web[12]", []),  # digits in brackets: a subscript (as in Ansible), past the end
        ("web[0]", ["web1"]),  # a subscript of a group, in inventory order
        ("web[-1]", ["web3"]),
        ("web[1:2]", ["web2", "web3"]),  # both ends included, as Ansible's
        ("web[1:]", ["web2", "web3"]),
        ("web[:1]", ["web1", "web2"]),
        ("web[0:1]:db", ["web1", "web2", "db1", "db2"]),  # the colon inside [] is no union
        ("web[7]", []),
        ("nosuchgroup", []),
        ("WEB", []),  # case-sensitive
        ("web:nosuch", ["web1", "web2", "web3"]),
    ],
)
def test_pattern_forms(pattern: str, expected: list[str]) -> None:
    assert match(pattern, HOSTS, GROUPS) == expected


@pytest.mark.parametrize(
    ("pattern", "says"),
    [
        ("", "is an empty pattern: name a group, a host, `all` or a glob"),
        (" : ", "is an empty pattern"),
        ("web:!", "`&` and `!` need a group, host or glob after them"),
        ("~web\\d+", "regular expressions (~...) are not supported in host patterns; use a glob"),
    ],
)
def test_patterns_that_do_not_read(pattern: str, says: str) -> None:
    with pytest.raises(PatternError, match=None) as caught:
        match(pattern, HOSTS, GROUPS)
    assert says in str(caught.value)


def test_split_keeps_ranges_whole() -> None:
    assert split("web[0:2]:db:!x") == ["web[0:2]", "db", "!x"]
    assert split("a, b ,c") == ["a", "b", "c"]


NAMES = st.sampled_from([f"h{i}" for i in range(12)])


@st.composite
def inventories(draw: st.DrawFn) -> tuple[list[str], dict[str, frozenset[str]]]:
    hosts = draw(st.lists(NAMES, min_size=1, max_size=12, unique=True))
    groups = {
        f"g{i}": frozenset(draw(st.lists(st.sampled_from(hosts), max_size=len(hosts))))
        for i in range(draw(st.integers(1, 4)))
    }
    groups["all"] = frozenset(hosts)
    return hosts, groups


TERMS = st.sampled_from(["all", "g0", "g1", "g2", "g3", "h0", "h1", "h5", "h1*", "g*", "nope"])


@given(inventories(), TERMS, TERMS)
def test_union_intersection_exclusion_are_set_algebra_in_inventory_order(
    inventory: tuple[list[str], dict[str, frozenset[str]]], a: str, b: str
) -> None:
    hosts, groups = inventory

    def names(pattern: str) -> list[str]:
        found = match(pattern, hosts, groups)
        assert found == [h for h in hosts if h in set(found)]  # inventory order, once each
        return found

    first, second = set(names(a)), set(names(b))
    assert set(names(f"{a}:{b}")) == first | second == set(names(f"{b},{a}"))
    assert set(names(f"{a}:&{b}")) == first & second
    assert set(names(f"{a}:!{b}")) == first - second
    assert set(names(f"!{b}")) | second == set(hosts)


def test_a_pattern_too_long_is_refused_and_work_grows_with_globs_and_hosts() -> None:
    with pytest.raises(PatternError) as caught:
        match("web:" * 5000, HOSTS, GROUPS)
    assert "a host pattern of 20,000 characters, more than the 10,000" in str(caught.value)
    with pytest.raises(PatternError) as caught:
        match(",".join(["web*"] * 101), HOSTS, GROUPS)
    assert "a host pattern of more than 100 terms" in str(caught.value)
    assert len(match(",".join(["web*"] * 100), HOSTS, GROUPS)) == 3
    assert work("web", 100_000) == 1 + 10_000
    assert work("web*:db?:!x", 100_000) == 3 + 3 * 10_000
