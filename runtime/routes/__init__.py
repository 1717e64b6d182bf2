"""The gateway's own route handlers: models and probes.

Which routes exist is declared once, in `runtime.operations`; every engine route is served by
`runtime.forward`.
"""
