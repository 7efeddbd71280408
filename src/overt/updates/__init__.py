"""The update channel: a TUF repository built from logged releases, and the client."""
