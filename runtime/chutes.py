"""The chutes being served, their replicas, and routing a request's `model` to one.

A chute has one or more replicas (engine processes, each on its own GPUs or cores). The
supervisor moves their states; routes pick the ready replica with the fewest requests
outstanding.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from engines.base import EngineBackend
from runtime.admission import Admission
from runtime.errors import EngineUnavailableError, InvalidRequestError, NotFoundError
from runtime.planner.plan import ReplicaPlan
from runtime.rewrite import split_thinking
from runtime.settings import ChuteSettings


class ChuteState(enum.Enum):
    PREPARING = "preparing"
    STARTING = "starting"
    READY = "ready"
    RESTARTING = "restarting"
    FAILED = "failed"
    STOPPED = "stopped"


@dataclass(frozen=True)
class Endpoint:
    """Where a running engine listens, and the per-boot key it expects."""

    base_url: str
    api_key: str

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}


@dataclass
class Replica:
    """One engine process of a chute."""

    index: int
    plan: ReplicaPlan = field(default_factory=lambda: ReplicaPlan(()))
    cpu_ids: tuple[int, ...] = ()
    state: ChuteState = ChuteState.STARTING
    endpoint: Endpoint | None = None
    outstanding: int = 0
    detail: str = ""
    restarts: int = 0

    def describe(self) -> dict[str, Any]:
        info: dict[str, Any] = {"state": self.state.value, "outstanding": self.outstanding}
        if self.plan.placements:
            info["gpus"] = self.plan.visible_devices
        if self.detail:
            info["detail"] = self.detail
        return info


@dataclass
class Chute:
    """One served model at run time.

    `phase` is the chute's own stage (preparing its model, failed, stopped); once its replicas
    exist (phase STARTING) the chute's state is read from them.
    """

    settings: ChuteSettings
    backend: EngineBackend
    admission: Admission
    replicas: list[Replica] = field(default_factory=list)
    phase: ChuteState = ChuteState.PREPARING
    card: dict[str, Any] = field(default_factory=dict)
    detail: str = ""
    created: int = field(default_factory=lambda: int(time.time()))

    @property
    def name(self) -> str:
        return self.settings.served_name

    @property
    def state(self) -> ChuteState:
        if self.phase is not ChuteState.STARTING or not self.replicas:
            return self.phase
        states = {r.state for r in self.replicas}
        for state in (ChuteState.READY, ChuteState.RESTARTING, ChuteState.STARTING):
            if state in states:
                return state
        return ChuteState.FAILED if states == {ChuteState.FAILED} else ChuteState.STOPPED

    def require_ready(self) -> None:
        if self.state is ChuteState.READY:
            return
        reason = self.detail or f"its engine is {self.state.value}"
        raise EngineUnavailableError(
            f"No instances available (yet) for chute {self.name}: {reason}",
            headers={"Retry-After": "5"},
        )

    def pick(self) -> tuple[Replica, Endpoint]:
        """The ready replica with the fewest requests outstanding; counts this one in."""
        ready = [r for r in self.replicas if r.state is ChuteState.READY and r.endpoint]
        if not ready:
            self.require_ready()
            raise EngineUnavailableError(f"No instances available (yet) for chute {self.name}")
        replica = min(ready, key=lambda r: r.outstanding)
        replica.outstanding += 1
        assert replica.endpoint is not None
        return replica, replica.endpoint


class ChuteSet:
    """All chutes of this gateway, looked up by the name clients send as `model`."""

    def __init__(self, chutes: Iterable[Chute]) -> None:
        self._by_name = {c.name: c for c in chutes}
        self.draining = False

    def __iter__(self) -> Iterator[Chute]:
        return iter(self._by_name.values())

    def get(self, name: str) -> Chute | None:
        return self._by_name.get(name)

    def resolve(self, model: str) -> tuple[Chute, bool]:
        """The chute for `model`, and whether the `:THINKING` suffix asked for thinking."""
        name, thinking = split_thinking(model)
        chute = self._by_name.get(model) or self._by_name.get(name)
        if chute is None:
            raise NotFoundError(f"model not found: {model}", param="model", code="model_not_found")
        return chute, thinking and chute.name != model

    def only_with(self, capability: str) -> Chute:
        """The one chute that serves `capability`, for requests that may omit `model`."""
        matches = [c for c in self if capability in c.backend.capabilities]
        if not matches:
            raise NotFoundError(f"no chute here serves {capability}", param="model",
                                code="model_not_found")  # fmt: skip
        if len(matches) > 1:
            names = ", ".join(c.name for c in matches)
            raise InvalidRequestError(
                f"model: several chutes serve {capability} ({names}); name one", param="model"
            )
        return matches[0]

    def all_ready(self) -> bool:
        return all(c.state is ChuteState.READY for c in self)
