"""The command-line clients: ``guessgame-play`` and ``guessgame-admin``.

`play` is the player client, `admin` the administrator's, and `common`
what both share (connecting, TLS, reading lines, a terminal console).
They reach the daemon over the network only; the player client checks
a guess as the player port would (`guessgame.player.modern.parse_guess`).
"""
