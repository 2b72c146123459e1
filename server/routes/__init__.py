"""The HTTP routes, one module per group; each has ``register(app)`` adding its route table."""
