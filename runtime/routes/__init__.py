"""HTTP routes, one module per API family."""

from starlette.routing import Route

from runtime.routes import health, images, models, openai, tokenize


def all_routes() -> list[Route]:
    return [*health.routes, *models.routes, *openai.routes, *images.routes, *tokenize.routes]
