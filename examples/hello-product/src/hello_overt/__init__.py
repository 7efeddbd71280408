"""A tiny greeting CLI, built and published through Overt's build conveyor."""

__version__ = "1.0.0"
