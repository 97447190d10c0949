"""The `garrison` command: one module per command group."""
