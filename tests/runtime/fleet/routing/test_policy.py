"""The routing policies: prefix affinity, the spill gate, load order and fairness."""

from __future__ import annotations

from dataclasses import dataclass

from runtime.fleet.routing.policy import Prompt, Router, RoutingPolicy
from runtime.fleet.routing.prefix import prefix_keys


@dataclass
class Fake:
    index: int
    outstanding: int = 0


def doc(n: int) -> Prompt:
    return Prompt(prefix_keys(f"document {n} " * 120, ("m", None)))


def route(router: Router, ready: list[Fake], prompt: Prompt | None) -> int:
    return ready[router.choose(ready, prompt)].index


def test_requests_sharing_a_prefix_go_to_the_replica_that_served_it() -> None:
    router = Router(RoutingPolicy.PREFIX, 1 << 20)
    ready = [Fake(0), Fake(1), Fake(2)]
    homes = {n: route(router, ready, doc(n)) for n in range(6)}
    for _ in range(3):
        for n in range(6):
            assert route(router, ready, doc(n)) == homes[n]
    assert router.stats.affinity_hits == 18
    assert len(set(homes.values())) == 3  # new prefixes went by load, in turn


def test_a_longer_shared_prefix_wins_over_a_shorter_one() -> None:
    router = Router(RoutingPolicy.PREFIX, 1 << 20)
    ready = [Fake(0), Fake(1)]
    base = "shared system prompt " * 20
    router.index.record(prefix_keys(base, ("m", None)), 0)
    router.index.record(prefix_keys(base + "and a long document " * 30, ("m", None)), 1)
    ready[1].outstanding = 1  # busier, but within the gate
    keys = prefix_keys(base + "and a long document " * 30 + "question", ("m", None))
    assert route(router, ready, Prompt(keys)) == 1


def test_a_loaded_affine_replica_spills_to_the_least_loaded_which_then_holds_it() -> None:
    router = Router(RoutingPolicy.PREFIX, 1 << 20)
    ready = [Fake(0), Fake(1)]
    prompt = doc(1)
    home = route(router, ready, prompt)
    other = 1 - home
    ready[home].outstanding = 4  # mean 2: above 1.5× the mean and mean + 2
    assert route(router, ready, prompt) == other
    assert router.stats.spills == 1
    depth, holders = router.index.match(prompt.keys, 0b11)
    assert depth == len(prompt.keys) and holders == 0b11
    # Just under the gate, affinity holds.
    ready[home].outstanding, ready[other].outstanding = 3, 1  # mean 2: 3 < 2 + 2
    assert route(router, ready, prompt) in (home, other)
    ready[other].outstanding = 0
    ready[home].outstanding = 1
    assert route(router, ready, prompt) == other  # both hold it; the less loaded of them


def test_a_popular_prefix_under_load_spreads_instead_of_making_a_hot_spot() -> None:
    router = Router(RoutingPolicy.PREFIX, 1 << 20)
    ready = [Fake(0), Fake(1)]
    for _ in range(16):  # 16 in flight at once, all with the same prefix
        ready[router.choose(ready, doc(7))].outstanding += 1
    assert max(r.outstanding for r in ready) <= 9


def test_distinct_prompts_go_by_load_and_ties_take_turns() -> None:
    router = Router(RoutingPolicy.PREFIX, 1 << 20)
    ready = [Fake(0), Fake(1)]
    for n in range(100):
        route(router, ready, doc(1000 + n))  # idle replicas every time: ties
    assert router.stats.routed == {0: 50, 1: 50}
    ready[0].outstanding = 3
    assert route(router, ready, doc(5000)) == 1


def test_least_outstanding_ignores_prompts() -> None:
    router = Router(RoutingPolicy.LEAST_OUTSTANDING, 1 << 20)
    body = {"messages": [{"role": "user", "content": "x" * 500}]}
    assert router.prompt(body, "chat", "m") is None
    ready = [Fake(0, outstanding=2), Fake(1, outstanding=1)]
    assert route(router, ready, None) == 1
    assert len(router.index) == 0


def test_keys_partition_by_model_and_cache_salt_and_skip_short_prompts() -> None:
    router = Router(RoutingPolicy.PREFIX, 1 << 20)
    body = {"messages": [{"role": "user", "content": "x" * 500}]}
    plain = router.prompt(body, "chat", "m")
    salted = router.prompt({**body, "cache_salt": "tenant-a"}, "chat", "m")
    thinking = router.prompt(body, "chat", "m:THINKING")
    assert plain and salted and thinking
    assert not set(plain.keys) & set(salted.keys)
    assert not set(plain.keys) & set(thinking.keys)
    assert router.prompt({"messages": [{"role": "user", "content": "hi"}]}, "chat", "m") is None
    assert router.prompt({"input": "x" * 500}, "embeddings", "m") is None


def test_forget_sends_the_prefix_by_load_again() -> None:
    router = Router(RoutingPolicy.PREFIX, 1 << 20)
    ready = [Fake(0), Fake(1)]
    home = route(router, ready, doc(3))
    router.forget(home)
    assert router.index.match(doc(3).keys, 0b11) == (0, 0)
