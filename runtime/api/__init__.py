"""The API layer: the app, its middleware, the route table, handlers and the relay."""
