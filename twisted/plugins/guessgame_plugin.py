"""twistd plugin: ``twistd guessgame`` runs the number-guessing daemon."""

from twisted.application.service import ServiceMaker

guessgame = ServiceMaker(
    "guessgame",
    "guessgame.tap",
    "A multiplayer number-guessing game (players on tcp:4000, admin on tcp:4001).",
    "guessgame",
)
