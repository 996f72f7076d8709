"""The flow language of Switchboard: schema, validation, compiled plans, templates and the interpreter (pure, no I/O)."""
