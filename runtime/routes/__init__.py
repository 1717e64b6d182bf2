"""HTTP routes, one module per API family."""

from starlette.routing import Route

from runtime.routes import health, images, models, openai, tokenize


def all_routes() -> list[Route]:
    # The engine routes first: the router tries routes in order, and they carry the load.
    return [*openai.routes, *images.routes, *tokenize.routes, *models.routes, *health.routes]
