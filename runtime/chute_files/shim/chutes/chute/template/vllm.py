"""`build_vllm_chute`, recorded."""

from chutes.chute.template import builder

build_vllm_chute = builder("vllm")
