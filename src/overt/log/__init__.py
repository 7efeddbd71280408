"""The log service: storage of entries, tiles and checkpoints on disk."""
