"""The routing policies: prefix affinity weighed against queued prompts, load order and
fairness."""

from __future__ import annotations

from dataclasses import dataclass

from runtime.fleet.routing.policy import Prompt, Router, RoutingPolicy
from runtime.fleet.routing.prefix import prefix_keys


@dataclass
class Fake:
    index: int
    outstanding: int = 0
    waiting: int = 0
    queued_blocks: int = 0


def doc(n: int) -> Prompt:
    return Prompt(prefix_keys(f"document {n} " * 120, ("m", None)))


def route(router: Router, ready: list[Fake], prompt: Prompt | None) -> int:
    return ready[router.choose(ready, prompt).position].index


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


def send(router: Router, ready: list[Fake], prompt: Prompt | None) -> int:
    """Route a request and count it in as a lease does: outstanding, waiting for its first
    output, with the prompt blocks it has to compute there."""
    choice = router.choose(ready, prompt)
    chosen = ready[choice.position]
    chosen.outstanding += 1
    chosen.waiting += 1
    chosen.queued_blocks += choice.blocks
    return chosen.index


def test_a_held_prefix_saves_only_its_part_of_the_prompt() -> None:
    router = Router(RoutingPolicy.PREFIX, 1 << 20)
    ready = [Fake(0), Fake(1)]
    prompt = doc(1)
    choice = router.choose(ready, prompt)  # nobody holds it: the whole prompt
    assert choice.blocks == prompt.blocks == len(prompt.keys) + 1
    home = ready[choice.position].index
    again = router.choose(ready, prompt)
    assert (ready[again.position].index, again.blocks) == (home, 1)  # only the tail


def test_prompts_queued_on_the_affine_replica_send_the_next_where_it_starts_sooner() -> None:
    router = Router(RoutingPolicy.PREFIX, 1 << 20)
    ready = [Fake(0), Fake(1)]
    prompt = doc(1)
    home = route(router, ready, prompt)
    other = 1 - home
    # Another whole prompt is being computed there: more than this one costs elsewhere.
    ready[home].outstanding = ready[home].waiting = 1
    ready[home].queued_blocks = prompt.blocks
    assert route(router, ready, prompt) == other
    assert router.stats.spills == 1
    depth, holders = router.index.match(prompt.keys, 0b11)
    assert depth == len(prompt.keys) and holders == 0b11  # which then holds it too
    # Both hold it now: the one that can start it sooner.
    ready[other].outstanding = ready[other].waiting = 1
    ready[other].queued_blocks = prompt.blocks + 1
    assert route(router, ready, prompt) == home


def test_a_replica_generating_for_others_keeps_its_long_prefix() -> None:
    router = Router(RoutingPolicy.PREFIX, 1 << 20)
    ready = [Fake(0), Fake(1)]
    prompt = doc(2)
    home = route(router, ready, prompt)
    ready[home].outstanding = 3  # generating for three: their prompts are done
    assert route(router, ready, prompt) == home
    assert router.stats.affinity_hits == 1 and router.stats.spills == 0


def test_a_popular_prefix_in_a_burst_spreads_instead_of_making_a_hot_spot() -> None:
    router = Router(RoutingPolicy.PREFIX, 1 << 20)
    ready = [Fake(0), Fake(1)]
    for _ in range(16):  # 16 at once, all with the same prefix, none answered yet
        send(router, ready, doc(7))
    assert {r.outstanding for r in ready} == {8}


def test_distinct_prompts_go_by_queued_work_and_ties_take_turns() -> None:
    router = Router(RoutingPolicy.PREFIX, 1 << 20)
    ready = [Fake(0), Fake(1)]
    for n in range(100):
        route(router, ready, doc(1000 + n))  # idle replicas every time: ties
    assert router.stats.routed == {0: 50, 1: 50}
    ready[0].outstanding = ready[0].waiting = 1
    ready[0].queued_blocks = 5
    assert route(router, ready, doc(5000)) == 1


def test_a_replica_computing_a_prompt_is_busier_than_one_generating_for_several() -> None:
    # Why round-robin beat load counts on distinct prompts: the replica that just finished
    # has the fewest requests, and a count sends it every new prompt at once, to be
    # computed together; queued prompt blocks send the second one elsewhere.
    router = Router(RoutingPolicy.PREFIX, 1 << 20)
    ready = [Fake(0), Fake(1, outstanding=3)]
    assert send(router, ready, doc(1)) == 0
    assert send(router, ready, doc(2)) == 1
    assert send(router, ready, doc(3)) == 0
    least = Router(RoutingPolicy.LEAST_OUTSTANDING, 1 << 20)
    ready = [Fake(0), Fake(1, outstanding=3)]
    assert [send(least, ready, None) for _ in range(3)] == [0, 0, 0]


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
