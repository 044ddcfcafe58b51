"""flatlib: loss-landscape flatness and generalization, reproducibly."""
__version__ = "0.1.0"
