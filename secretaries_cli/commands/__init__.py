"""One module per command group; each exposes `register(app)` or a sub-app."""
