"""`GET /v1/models` and `GET /v1/models/{id}`: engine model cards plus Chutes' prices; and
`GET /chutes`: every chute, models and custom chutes, with its id (and cords)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse

from runtime.api.record import record_of
from runtime.api.state import gateway_of
from runtime.errors import NotFoundError
from runtime.fleet.chutes import Chute, ChuteState
from runtime.protocol.models import LoadState, Model, ModelList, Price, PriceAmount, Pricing

# What each chute state means to a client choosing a model: can it answer now, soon, or not.
LOAD_STATES: dict[ChuteState, LoadState] = {
    ChuteState.READY: "loaded", ChuteState.UNREACHABLE: "loaded",
    ChuteState.UNLOADED: "unloaded", ChuteState.STOPPED: "unloaded",
    ChuteState.SLEEPING: "sleeping",
    ChuteState.FAILED: "failed",
}  # fmt: skip


def model_card(chute: Chute) -> Model:
    settings = chute.settings
    card = chute.card
    return Model(
        id=chute.name,
        created=int(card.get("created", chute.created)),
        owned_by="chutebox",
        root=card.get("root", settings.model),
        max_model_len=card.get("max_model_len"),
        chute_id=chute.chute_id,
        state=LOAD_STATES.get(chute.state, "loading"),
        price=Price(
            input=PriceAmount(usd=settings.price_prompt, tao=0.0),
            output=PriceAmount(usd=settings.price_completion, tao=0.0),
        ),
        pricing=Pricing(prompt=settings.price_prompt, completion=settings.price_completion),
    )


def visible(request: Request) -> list[Chute]:
    """The chutes the caller may call (every one without a key, where listing is public)."""
    caller = record_of(request.scope).caller
    chutes = gateway_of(request).chutes
    return [c for c in chutes if caller is None or caller.may_call(c.name)]


def find_visible(request: Request, name_or_id: str, param: str = "chute") -> Chute:
    """The model chute named (by name or id) that the caller may see; 404 otherwise."""
    for chute in visible(request):
        if chute.code is None and name_or_id in (chute.name, chute.chute_id):
            return chute
    raise NotFoundError(f"no chute {name_or_id!r} here", param=param, code="chute_not_found")


def adapter_cards(chute: Chute) -> list[Model]:
    """A chute's LoRA adapters, each a model of its own: `CHUTE:ADAPTER`."""
    base = model_card(chute)
    return [
        base.model_copy(update={"id": f"{chute.name}:{name}", "root": folder, "parent": chute.name})
        for name, folder in chute.settings.adapters.items()
    ]


def cards(request: Request) -> list[Model]:
    # Models, not custom chutes: those are listed, with their cords, at GET /chutes.
    chutes = [c for c in visible(request) if c.code is None]
    return [card for c in chutes for card in (model_card(c), *adapter_cards(c))]


async def list_models(request: Request) -> JSONResponse:
    listing = ModelList(data=cards(request))
    return JSONResponse(listing.model_dump(exclude_none=True))


async def retrieve_model(request: Request) -> JSONResponse:
    name = request.path_params["model"]
    card = next((c for c in cards(request) if c.id == name), None)
    if card is None:  # a custom chute is no model (GET /chutes)
        raise NotFoundError(f"model not found: {name}", param="model", code="model_not_found")
    return JSONResponse(card.model_dump(exclude_none=True))


async def list_chutes(request: Request) -> JSONResponse:
    chutes = []
    for chute in visible(request):
        entry: dict[str, object] = {
            "name": chute.name,
            "chute_id": chute.chute_id,
            "engine": chute.backend.name,
            "state": chute.state.value,
        }
        if chute.code is not None:
            entry["username"] = chute.code.username
            entry["cords"] = [{"function": c.function, "method": c.method, "path": c.path,
                               "url": f"/chutes/{chute.name}{c.path}", "stream": c.stream,
                               "output_content_type": c.output_content_type,
                               "body_schema": c.body_schema}
                              for c in chute.code.cords]  # fmt: skip
        chutes.append(entry)
    return JSONResponse({"object": "list", "data": chutes})
