"""Configuration: the one settings schema, and the embedded default chute."""
