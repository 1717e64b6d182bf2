"""The image DSL that renders Dockerfiles, and the standard engine image recipes."""
