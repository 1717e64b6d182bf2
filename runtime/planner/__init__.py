"""The GPU planner: a pure core (facts in, plan out) with thin adapters at its edges.

`inventory` and `gputable` describe GPUs, `model` reads model facts, `sizing` holds the memory
arithmetic, `plan` decides, `multinode` writes launch commands, `discovery` reads the host, and
`render` prints. Only `discovery` and `model` touch the outside world.
"""
