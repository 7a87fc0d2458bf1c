"""The fuzz harness: hostile inputs through the CLI (docs/security.md)."""
