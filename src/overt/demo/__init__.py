"""`overt demo`: a complete sample deployment in one directory (see docs/demo.md)."""
