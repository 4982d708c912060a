"""Where the game's lasting state lives: one module per store.

`base` is the seam (the `Store` interface, `MemoryStore` and the values
a store keeps), `sqlite` the SQLite file store of ``--db PATH``.
"""
