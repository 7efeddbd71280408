"""The one ASGI app: static tlog-tiles resources, JSON APIs and dashboard pages."""
