"""The image DSL that renders Dockerfiles, and the standard engine image recipes.

from images import Image, recipes
"""

from images import recipes
from images.image import Image, ImageError

__all__ = ["Image", "ImageError", "recipes"]
