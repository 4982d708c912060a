"""A first end-to-end check of the player port over a StringTransport."""

from guessgame.player import PlayerFactory
from tests.common import connect, make_game, secret_of


def test_greeting_and_win() -> None:
    """A player is greeted, and guessing the secret wins and closes."""
    game = make_game()
    peer = connect(PlayerFactory(game))
    assert peer.read() == ["You are now connected to the server!", "Pick a number between 1-30"]
    secret = secret_of(game)
    assert peer.send(f"{secret}\n".encode()) == [
        f"Correct! The number was {secret}. You won in 1 guess!"
    ]
    assert peer.closed
