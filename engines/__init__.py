"""Engine backends: how each engine is launched, probed and spoken to.

Backend modules build commands and never import their engine library at import time; the
worker servers chutebox runs itself import their heavy libraries inside the worker process.
"""
