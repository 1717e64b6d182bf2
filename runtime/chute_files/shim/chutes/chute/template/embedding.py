"""`build_embedding_chute`, recorded."""

from chutes.chute.template import builder

build_embedding_chute = builder("embedding")
