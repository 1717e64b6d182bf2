"""E2EE instances, what a client may encrypt to: one ML-KEM-768 key pair per replica, made
when the gateway starts and kept only in its memory, and the single-use nonces handed out
with them.

A nonce is good for one request to the instance it was issued for, within `ttl` seconds (the
client's default is 55). Redeeming it spends it whatever follows: a nonce seen twice is a
replay.
"""

from __future__ import annotations

import base64
import secrets
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from runtime.errors import InvalidRequestError
from runtime.protocol.e2ee import KeyPair, new_keypair

NONCE_TTL = 55.0
NONCES_PER_CALL = 8
# Outstanding nonces kept at most; the oldest go first past it.
MAX_NONCES = 65536


@dataclass(frozen=True)
class Instance:
    """One replica as E2EE clients know it."""

    instance_id: str
    chute: str
    replica: int
    keys: KeyPair


class Instances:
    """Every replica's key pair, and the nonces issued for them."""

    def __init__(
        self,
        replicas: Iterable[tuple[str, int]],
        clock: Callable[[], float] = time.monotonic,
        ttl: float = NONCE_TTL,
    ) -> None:
        self.clock = clock
        self.ttl = ttl
        self.by_id = {str(uuid.uuid4()): (chute, index, new_keypair()) for chute, index in replicas}
        self._by_replica = {(c, i): iid for iid, (c, i, _) in self.by_id.items()}
        self._nonces: OrderedDict[str, tuple[str, float]] = OrderedDict()

    def instance(self, chute: str, replica: int) -> Instance:
        """The replica's instance; one a chute gained since (a replica added while the
        gateway runs) gets its key pair now."""
        iid = self._by_replica.get((chute, replica))
        if iid is None:
            iid = self._by_replica[(chute, replica)] = str(uuid.uuid4())
            self.by_id[iid] = (chute, replica, new_keypair())
        return Instance(iid, chute, replica, self.by_id[iid][2])

    def listing(self, chute: str, ready: Iterable[int]) -> dict[str, Any]:
        """`GET /e2e/instances/{chute}`: the ready replicas, each with fresh nonces."""
        now = self.clock()
        self._expire(now)
        instances = []
        for index in ready:
            found = self.instance(chute, index)
            nonces = [secrets.token_hex(16) for _ in range(NONCES_PER_CALL)]
            for nonce in nonces:
                self._nonces[nonce] = (found.instance_id, now + self.ttl)
            public = base64.b64encode(found.keys.public).decode()
            entry = {"instance_id": found.instance_id, "e2e_pubkey": public, "nonces": nonces}
            instances.append(entry)
        while len(self._nonces) > MAX_NONCES:
            self._nonces.popitem(last=False)
        return {"instances": instances, "nonce_expires_in": int(self.ttl)}

    def redeem(self, nonce: str, instance_id: str, chute: str) -> Instance:
        """The instance a request is sealed to, its nonce spent; 400 naming the header at
        fault for an unknown, spent or expired nonce, or one issued for another instance."""
        issued = self._nonces.pop(nonce, None)
        if issued is None or issued[1] < self.clock():
            raise InvalidRequestError(
                "X-E2E-Nonce: unknown, already used or expired; get fresh nonces from "
                f"GET /e2e/instances/{chute}",
                param="X-E2E-Nonce",
                code="invalid_nonce",
            )
        held = self.by_id.get(instance_id)
        if issued[0] != instance_id or held is None or held[0] != chute:
            raise InvalidRequestError(
                "X-Instance-Id: the nonce was issued for another instance, or the instance "
                "is not one of this chute's",
                param="X-Instance-Id",
                code="wrong_instance",
            )
        return Instance(instance_id, held[0], held[1], held[2])

    def _expire(self, now: float) -> None:
        # Issued in order with one lifetime: the expired ones are at the front.
        while self._nonces:
            nonce, (_, expires) = next(iter(self._nonces.items()))
            if expires >= now:
                return
            del self._nonces[nonce]
