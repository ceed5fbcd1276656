"""The client a JAX training loop embeds to push gradients and pull parameters.

Nothing lives here yet: the client (pytree <-> keys, routing, retries with deadlines,
exactly-once pushes, sync modes, prefetch) arrives in a later issue.
"""
