"""The flow language: schema, validation, compiled plans, templates and the interpreter (pure, no I/O)."""
