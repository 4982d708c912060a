"""The line layer both ports share: framing and line editing, telnet, limits.

`lines` frames, edits and decodes lines (`GuardedLineReceiver`),
`telnet` filters negotiation out of the byte stream, `limits` holds the
parts of the player port's limits, and `hangup` makes a closed TCP
connection end in a reset that netcat notices.  Nothing here knows the
game; only `guessgame.events` is below it.
"""
