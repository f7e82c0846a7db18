"""Native accelerators and their pure-Python twins."""
