"""The WebSocket player on ``/play``, against the real reactor on loopback.

A WebSocket player is a player-port connection in the modern dialect:
the same greeting, replies, notices and limits, one text message a line.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest_twisted
from twisted.internet import defer, task
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport

from guessgame.admin.protocol import AdminFactory
from guessgame.events import Joined, Left
from guessgame.player.modern import IDLE_GOODBYE, SERVER_FULL, TOO_MANY_FROM_ADDRESS
from guessgame.web.wsplayer import MessageTransport
from guessgame.wire.limits import Limits
from tests.common import FakeObserver, connect, open_client, secret_of
from tests.test_web import serve
from tests.webclient import WAIT, WsClient, get, open_ws, reactor

GREETING = ["You are now connected to the server!", "Pick a number between 1-30"]
PROMPT = "Pick a number between 1-30"


class FakeWebSocket:
    """What `MessageTransport` uses of Twisted's WebSocket transport, recorded."""

    def __init__(self) -> None:
        self.messages: list[str] = []
        self.closes: list[int] = []

    def sendTextMessage(self, text: str) -> None:
        """Record a message."""
        self.messages.append(text)

    def loseConnection(self, code: int = 1000) -> None:
        """Record a close."""
        self.closes.append(code)


class FakeRequest:
    """A request whose channel's transport is a StringTransport."""

    def __init__(self) -> None:
        self.channel = self
        self.transport = StringTransport(peerAddress=IPv4Address("TCP", "192.0.2.1", 5000))
        self.producer: Any = None

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        """Record the producer."""
        self.producer = producer


def test_message_transport_turns_lines_into_messages() -> None:
    """Each CRLF line written is one message; a close is sent once; nothing after it."""
    ws = FakeWebSocket()
    request = FakeRequest()
    transport = MessageTransport(ws, request)  # type: ignore[arg-type]
    transport.write(b"You are now connected to the server!\r\nPick a number between 1-30\r\n")
    transport.write(b"Too lo")
    transport.write(b"w!\r\n")
    assert ws.messages == [
        "You are now connected to the server!",
        "Pick a number between 1-30",
        "Too low!",
    ]
    assert str(transport.getPeer()) == str(IPv4Address("TCP", "192.0.2.1", 5000))
    transport.bufferSize = 4096
    assert request.transport.bufferSize == 4096  # type: ignore[attr-defined]
    transport.pauseProducing()
    assert request.transport.producerState == "paused"
    transport.resumeProducing()
    assert request.transport.producerState == "producing"
    transport.loseConnection()
    transport.loseConnection()
    assert ws.closes == [1000] and transport.disconnecting
    transport.write(b"late\r\n")
    assert ws.messages[-1] == "Too low!"
    transport.abortConnection()
    assert request.transport.disconnecting


@defer.inlineCallbacks
def greeted(client: WsClient) -> Any:
    """The two greeting messages."""
    lines = [(yield client.next_message()), (yield client.next_message())]
    return lines


@defer.inlineCallbacks
def closed(client: WsClient) -> Any:
    """Wait for the connection to end; the close code the server sent."""
    yield client.lost.addTimeout(WAIT, reactor())
    return client.close_code


@pytest_twisted.inlineCallbacks
def test_greeting_and_a_game_to_correct() -> Iterator[Any]:
    """Greeting, one reply a message, a binary search to Correct!, then a normal close."""
    served = yield serve()
    try:
        client = yield open_ws(served.web)
        assert (yield greeted(client)) == GREETING
        lo, hi, guesses = 1, 30, 0
        while True:
            guess = (lo + hi) // 2
            client.send(str(guess))
            guesses += 1
            reply = yield client.next_message()
            if reply == f"Too low! {PROMPT}":
                lo = guess + 1
            elif reply == f"Too high! {PROMPT}":
                hi = guess - 1
            else:
                break
        plural = "guess" if guesses == 1 else "guesses"
        assert reply == f"Correct! The number was {guess}. You won in {guesses} {plural}!"
        assert (yield closed(client)) == 1000
        assert served.game.players == {}
    finally:
        yield served.stop()


@pytest_twisted.inlineCallbacks
def test_commands_and_bad_input_get_the_player_port_replies() -> Iterator[Any]:
    """Commands, bad input and a message with a line end inside get one reply each."""
    served = yield serve()
    try:
        client = yield open_ws(served.web)
        yield greeted(client)
        for sent, expected in [
            ("name Wendy", "You are now known as Wendy."),
            ("top", "No winners yet."),
            ("", PROMPT),
            ("abc", PROMPT),
            ("31", PROMPT),
            ("4\n5", PROMPT),
            ("  HELP  ", None),
        ]:
            client.send(sent)
            reply = yield client.next_message()
            if expected is None:
                assert reply.startswith("Guess the secret whole number between 1-30.")
            else:
                assert reply == expected
        client.send("quit")
        assert (yield client.next_message()) == "Goodbye!"
        assert (yield closed(client)) == 1000
    finally:
        yield served.stop()


@pytest_twisted.inlineCallbacks
def test_always_the_modern_dialect() -> Iterator[Any]:
    """Even with the classic wait on, a Hello sent at once is greeted and answered as modern."""
    served = yield serve(classic_wait=0.5)
    try:
        client = yield open_ws(served.web)
        client.send("Hello")
        assert (yield greeted(client)) == GREETING
        assert (yield client.next_message()) == PROMPT
    finally:
        yield served.stop()


@pytest_twisted.inlineCallbacks
def test_shows_with_its_address_and_gets_notices() -> Iterator[Any]:
    """The game sees its peer address; a TCP win, say and kick reach it as notices."""
    served = yield serve()
    observer = FakeObserver()
    served.game.add_observer(observer)
    try:
        client = yield open_ws(served.web)
        yield greeted(client)
        local = client.transport.getHost()
        (player,) = served.game.players.values()
        assert player.address == f"127.0.0.1:{local.port}"
        assert Joined(player.id, player.name, f"127.0.0.1:{local.port}") in observer.events
        admin = connect(AdminFactory(served.game))
        admin.send(b"Admin-Greetings\n")
        (line, ok) = admin.send(b"who\n")
        assert line.startswith(f"PLAYER {player.id} {player.name} 127.0.0.1:{local.port} 0 ")
        assert ok == "OK 1 player"
        admin.lose()
        tcp = yield open_client(served.tcp)
        yield tcp.next_line()
        yield tcp.next_line()
        tcp.send("name tom")
        yield tcp.next_line()
        secret = secret_of(served.game)
        tcp.send(str(secret))
        assert (yield tcp.next_line()).startswith("Correct!")
        assert (yield client.next_message()) == (
            f"*** tom won the round with {secret}. A new number between 1-30 has been picked."
        )
        assert served.game.say("hello web") == 1
        assert (yield client.next_message()) == "*** Message from the administrator: hello web"
        served.game.new_round()
        assert (yield client.next_message()) == (
            "*** The administrator started a new round. Pick a number between 1-30"
        )
        assert served.game.kick(player.id)
        assert (yield client.next_message()) == (
            "*** You have been removed by the administrator. Goodbye!"
        )
        assert (yield closed(client)) == 1000
        assert Left(player.id, player.name, "kicked") in observer.events
    finally:
        yield served.stop()


@pytest_twisted.inlineCallbacks
def test_server_stop_says_goodbye() -> Iterator[Any]:
    """When the game stops, a WebSocket player gets the shutdown notice and a close."""
    served = yield serve()
    client = yield open_ws(served.web)
    yield greeted(client)
    yield served.stop()
    assert (yield client.next_message()) == "*** The server is shutting down. Goodbye!"
    assert (yield closed(client)) == 1000


@pytest_twisted.inlineCallbacks
def test_max_per_ip_counts_tcp_and_websocket_players_together() -> Iterator[Any]:
    """With --max-per-ip 1, a WebSocket from an address a TCP player holds is refused."""
    served = yield serve(Limits(max_per_ip=1))
    try:
        tcp = yield open_client(served.tcp)
        yield tcp.next_line()
        client = yield open_ws(served.web)
        assert (yield client.next_message()) == TOO_MANY_FROM_ADDRESS
        yield closed(client)
        other = yield open_ws(served.web, source="127.0.0.2")
        assert (yield greeted(other)) == GREETING
        assert len(served.game.players) == 2
    finally:
        yield served.stop()


@pytest_twisted.inlineCallbacks
def test_max_players_counts_websocket_players() -> Iterator[Any]:
    """With --max-players 1, a WebSocket player fills the server for a TCP player."""
    served = yield serve(Limits(max_players=1))
    try:
        client = yield open_ws(served.web)
        assert (yield greeted(client)) == GREETING
        tcp = yield open_client(served.tcp, host="127.0.0.1")
        assert (yield tcp.next_line()) == SERVER_FULL
        yield tcp.lost.addTimeout(WAIT, reactor())
        late = yield open_ws(served.web)
        assert (yield late.next_message()) == SERVER_FULL
        yield closed(late)
    finally:
        yield served.stop()


@pytest_twisted.inlineCallbacks
def test_long_message_is_a_line_too_long() -> Iterator[Any]:
    """A message over --max-line bytes gets the line-too-long goodbye, however large."""
    served = yield serve(max_line=64)
    try:
        client = yield open_ws(served.web)
        yield greeted(client)
        client.send("7" * 64)
        assert (yield client.next_message()) == PROMPT
        client.send("7" * 65)
        assert (yield client.next_message()) == "*** Line too long. Goodbye!"
        yield closed(client)
        huge = yield open_ws(served.web)
        yield greeted(huge)
        huge.send("x" * 1_000_000)
        assert (yield huge.next_message()) == "*** Line too long. Goodbye!"
        yield closed(huge)
        assert served.game.players == {}
    finally:
        yield served.stop()


@pytest_twisted.inlineCallbacks
def test_a_message_in_fragments_is_one_line() -> Iterator[Any]:
    """A message sent as several frames is still one line (Twisted 26.10 gathers them)."""
    served = yield serve()
    try:
        client = yield open_ws(served.web)
        yield greeted(client)
        client.send_part("na")
        client.send_part("me fr")
        client.send("ag")
        assert (yield client.next_message()) == "You are now known as frag."
    finally:
        yield served.stop()


@pytest_twisted.inlineCallbacks
def test_unfinished_long_message_is_refused_before_it_ends() -> Iterator[Any]:
    """A message that goes on past the bound is refused without waiting for its end."""
    served = yield serve(max_line=64)
    try:
        client = yield open_ws(served.web)
        yield greeted(client)
        client.send_part("7" * 300)
        assert (yield client.next_message()) == "*** Line too long. Goodbye!"
        yield closed(client)
    finally:
        yield served.stop()


@pytest_twisted.inlineCallbacks
def test_idle_websocket_is_warned_then_closed() -> Iterator[Any]:
    """A silent WebSocket player gets the idle warning, then the idle goodbye."""
    served = yield serve(Limits(idle_timeout=0.6))
    try:
        client = yield open_ws(served.web)
        yield greeted(client)
        assert (yield client.next_message()) == (
            "*** No input for a while: say something within 1 second to stay."
        )
        assert (yield client.next_message()) == IDLE_GOODBYE
        yield closed(client)
    finally:
        yield served.stop()


@pytest_twisted.inlineCallbacks
def test_flood_is_slowed_not_dropped() -> Iterator[Any]:
    """Messages beyond --max-rate are read later, and every one is answered."""
    served = yield serve(Limits(max_rate=100, max_output=1 << 20))
    try:
        client = yield open_ws(served.web)
        yield greeted(client)
        for _ in range(300):
            client.send("flood")
        for _ in range(300):
            assert (yield client.next_message()) == PROMPT
    finally:
        yield served.stop()


@pytest_twisted.inlineCallbacks
def test_binary_message_closes_with_1003() -> Iterator[Any]:
    """A binary message closes the connection with code 1003 and the player leaves."""
    served = yield serve()
    try:
        client = yield open_ws(served.web)
        yield greeted(client)
        client.send_bytes(b"\x00\x01")
        assert (yield closed(client)) == 1003
        assert served.game.players == {}
    finally:
        yield served.stop()


@pytest_twisted.inlineCallbacks
def test_foreign_origin_is_refused_with_403() -> Iterator[Any]:
    """A handshake whose Origin names another host gets 403 and no player joins."""
    served = yield serve()
    try:
        client = yield open_ws(served.web, origin="http://evil.example", accept=False)
        try:
            yield client.accepted.addTimeout(WAIT, reactor())
        except ConnectionError:
            pass
        assert client.rejected_status == 403
        yield client.close()
        assert served.game.players == {}
        own = yield open_ws(served.web, origin=f"http://127.0.0.1:{served.web}")
        assert (yield greeted(own)) == GREETING
        response = yield get(
            served.web,
            "/play",
            headers={
                "Origin": "http://127.0.0.1:1",
                "Upgrade": "websocket",
                "Connection": "Upgrade",
                "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
                "Sec-WebSocket-Version": "13",
            },
        )
        assert response.status == 403
        assert response.headers["x-content-type-options"] == "nosniff"
    finally:
        yield served.stop()


@pytest_twisted.inlineCallbacks
def test_reader_that_stops_reading_is_dropped() -> Iterator[Any]:
    """A WebSocket player that stops reading is dropped at --max-output, reason error."""
    served = yield serve(Limits(max_output=4096))
    observer = FakeObserver()
    served.game.add_observer(observer)
    try:
        client = yield open_ws(served.web)
        yield greeted(client)
        client.transport.pauseProducing()  # stop reading
        (player,) = served.game.players.values()
        for _ in range(400):  # bounded: a few MB of notices at most
            for _ in range(200):
                served.game.say("x" * 200)
            yield task.deferLater(reactor(), 0, lambda: None)
            if not served.game.players:
                break
        assert served.game.players == {}
        assert Left(player.id, player.name, "error") in observer.events
        yield client.close()
    finally:
        yield served.stop()
