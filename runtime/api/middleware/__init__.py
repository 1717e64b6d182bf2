"""Pure ASGI middleware: the request record, invocation ids, keys, observation."""
