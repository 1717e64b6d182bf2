"""Which replica of a chute a request goes to: by load, or to the replica that most likely
holds its prompt's prefix in its KV cache."""
