"""`build_sglang_chute`, recorded."""

from chutes.chute.template import builder

build_sglang_chute = builder("sglang")
