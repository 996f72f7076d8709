"""Node types: one module per type (config Struct, run(), check()), collected in registry.NODE_TYPES."""
