"""Engine backends: how each engine is launched, probed and spoken to.

Each backend implements the contract in `runtime.fleet.backend`, and
`runtime.fleet.registry` loads it by import string: `engines` depends on `runtime`, never
the other way. Backend modules build commands and never import their engine library at
import time; the worker servers chutebox runs itself import their heavy libraries inside the
worker process.
"""
