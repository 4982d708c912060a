"""guessgame: a multiplayer number-guessing game served by a Twisted daemon."""

__version__ = "1.0.0"
