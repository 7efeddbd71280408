"""Monitors: follow logs, check every checkpoint and entry, compare with witnesses, alert."""
