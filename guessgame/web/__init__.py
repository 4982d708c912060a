"""The web port: a live page of the game, its JSON API, and play in a browser.

`site` builds the `twisted.web` site and its resources, `events` streams
the game's events to pages as Server-Sent Events, `play` guards the
WebSocket handshake of ``/play``, and `wsplayer` (the one module that
touches the player connection) lets a WebSocket play as a player-port
connection; ``static/`` is the page.
"""
