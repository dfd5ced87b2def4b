"""The user-facing layer: CLI, demo and reports."""
