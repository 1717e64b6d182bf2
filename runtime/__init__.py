"""chutebox's gateway runtime: settings, auth, routing, streaming, supervision.

Importing this package never imports torch or an engine library; engines live in `engines/`
and run in their own processes.
"""

__version__ = "0.1.0"
