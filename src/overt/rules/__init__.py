"""Detection-rule transparency: parse, compile, lint, diff and release YARA rule sets."""
