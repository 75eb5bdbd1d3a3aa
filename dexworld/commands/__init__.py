"""Subcommands of the ``dexworld`` CLI, one module each (auto-discovered by ``dexworld.cli``)."""
