"""`build_diffusion_chute`, recorded."""

from chutes.chute.template import builder

build_diffusion_chute = builder("diffusion")
