"""flatlib: loss-landscape flatness and generalization, reproducibly.

One layer per folder, each importing only from those below (checked by ``lint-imports``):
``pipeline`` (notebook registry, CLI, scheduler) → ``experiments`` → ``train`` (config, engine,
optimizers, update rules) → ``measures`` → ``curvature`` | ``fisher`` → ``models`` | ``data`` →
core (``_torch``, ``params``, ``store``, ``estimate``, ``progress``).
"""
__version__ = "0.1.0"
