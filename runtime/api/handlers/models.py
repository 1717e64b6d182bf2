"""`GET /v1/models` and `GET /v1/models/{id}`: engine model cards plus Chutes' prices."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse

from runtime.api.state import gateway_of
from runtime.errors import NotFoundError
from runtime.fleet.chutes import Chute
from runtime.protocol.models import Model, ModelList, Price, PriceAmount, Pricing


def model_card(chute: Chute) -> Model:
    settings = chute.settings
    card = chute.card
    return Model(
        id=chute.name,
        created=int(card.get("created", chute.created)),
        owned_by="chutebox",
        root=card.get("root", settings.model),
        max_model_len=card.get("max_model_len"),
        price=Price(
            input=PriceAmount(usd=settings.price_prompt, tao=0.0),
            output=PriceAmount(usd=settings.price_completion, tao=0.0),
        ),
        pricing=Pricing(prompt=settings.price_prompt, completion=settings.price_completion),
    )


async def list_models(request: Request) -> JSONResponse:
    chutes = gateway_of(request).chutes
    listing = ModelList(data=[model_card(c) for c in chutes])
    return JSONResponse(listing.model_dump(exclude_none=True))


async def retrieve_model(request: Request) -> JSONResponse:
    name = request.path_params["model"]
    chute = gateway_of(request).chutes.get(name)
    if chute is None:
        raise NotFoundError(f"model not found: {name}", param="model", code="model_not_found")
    return JSONResponse(model_card(chute).model_dump(exclude_none=True))
