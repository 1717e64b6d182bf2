"""`from chutes.image import Image`: chutebox's builder has the SDK's vocabulary."""

from images.image import Image

__all__ = ["Image"]
