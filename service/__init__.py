"""Entry points: the `availability` command, its settings, and the wiring of each mode.

This is the one package that may import availability/, api/, streams/ and embedded/ alike.
"""
