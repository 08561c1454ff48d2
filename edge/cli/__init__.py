"""The ``hie-edge`` command."""
