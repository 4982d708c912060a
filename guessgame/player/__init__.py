"""The player port: one composed connection, its dialects, its factory.

`connection` is `PlayerConnection`, the protocol of every player
connection (TCP, and the web port's WebSocket): the line layer, the
limits and detection of its dialect.  `modern` and `classic` are the
two dialects, each the one module holding every line it reads and every
text it sends.  `factory` is `PlayerFactory`, which the listeners and
the web port build connections from.
"""
