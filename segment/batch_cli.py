"""The ``segment batch`` command (registered on the CLI's app when imported)."""
