"""The gateway's own route handlers: models, probes, status, the page, OpenAPI."""
