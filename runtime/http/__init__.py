"""The HTTP layer: client connections (the server's guard) and the engine client."""
