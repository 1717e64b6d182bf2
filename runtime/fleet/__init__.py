"""The chutes being served: replicas, admission, routing, the engine backend contract."""
