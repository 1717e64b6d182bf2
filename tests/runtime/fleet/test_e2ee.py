import pytest

from runtime.errors import InvalidRequestError
from runtime.fleet.e2ee import NONCES_PER_CALL, Instances


class Clock:
    now = 100.0

    def __call__(self) -> float:
        return self.now


def test_each_replica_has_its_key_and_each_nonce_serves_once() -> None:
    clock = Clock()
    book = Instances([("a", 0), ("a", 1), ("b", 0)], clock)
    listing = book.listing("a", [0, 1])
    assert listing["nonce_expires_in"] == 55
    first, second = listing["instances"]
    assert first["e2e_pubkey"] != second["e2e_pubkey"]
    assert len(first["nonces"]) == NONCES_PER_CALL
    nonce = first["nonces"][0]
    assert book.redeem(nonce, first["instance_id"], "a").replica == 0
    with pytest.raises(InvalidRequestError, match="already used") as spent:
        book.redeem(nonce, first["instance_id"], "a")
    assert spent.value.param == "X-E2E-Nonce"
    with pytest.raises(InvalidRequestError) as wrong:
        book.redeem(first["nonces"][1], second["instance_id"], "a")
    assert wrong.value.param == "X-Instance-Id"
    with pytest.raises(InvalidRequestError) as other_chute:
        book.redeem(first["nonces"][2], first["instance_id"], "b")
    assert other_chute.value.param == "X-Instance-Id"
    clock.now += 56
    with pytest.raises(InvalidRequestError, match="expired"):
        book.redeem(first["nonces"][3], first["instance_id"], "a")
    book.listing("a", [])  # expired ones are dropped as new ones are issued
    assert not book._nonces


def test_a_replica_added_later_gets_its_key_when_first_listed() -> None:
    book = Instances([])
    (entry,) = book.listing("a", [3])["instances"]
    assert book.redeem(entry["nonces"][0], entry["instance_id"], "a").replica == 3
    assert book.instance("a", 3).instance_id == entry["instance_id"]
