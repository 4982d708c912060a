"""What the clients share: where to connect, and how failing to connect reads."""

from __future__ import annotations

from typing import Any

import pytest
import pytest_twisted
from twisted.internet import endpoints, error, protocol
from twisted.python.failure import Failure
from twisted.python.usage import UsageError

from guessgame.clients.common import (
    ClientError,
    ClientOptions,
    before_shutdown,
    completer,
    connect,
    describe_connect_error,
    endpoint_host,
    erase_input,
    format_host_port,
)
from tests.clients import (
    TLS_FAILURES,
    TLSListeners,
    make_certificate,
    tls_failure,
    tls_listen,
    trust_roots,
)

__all__ = ["tls_listen"]  # fixtures


def the_reactor() -> object:
    """The global reactor: building an endpoint does not connect."""
    from twisted.internet import reactor

    return reactor


class Options(ClientOptions):
    """ClientOptions with a default port, as the clients set one."""

    default_port = 4000


def parse(*argv: str) -> Options:
    """Options parsed from ``argv``."""
    options = Options()
    options.parseOptions(list(argv))
    return options


def test_defaults() -> None:
    """Without options: 127.0.0.1 and the client's default port, by host name."""
    options = parse()
    assert (options["host"], options["port"], options.address) == (
        "127.0.0.1",
        4000,
        "127.0.0.1:4000",
    )
    assert isinstance(options.endpoint(the_reactor()), endpoints.HostnameEndpoint)


def test_ipv6_host() -> None:
    """An IPv6 host is shown in brackets."""
    assert parse("--host", "::1", "--port", "4100").address == "[::1]:4100"


def test_connect() -> None:
    """--connect takes an endpoint string and names the server by it."""
    options = parse("--connect", "tcp:host=127.0.0.1:port=4000")
    assert options.address == "tcp:host=127.0.0.1:port=4000"
    assert isinstance(options.endpoint(the_reactor()), endpoints.TCP4ClientEndpoint)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--port", "0"], "--port must be a TCP port number (1-65535), not '0'"),
        (["--port", "\uff14"], "--port must be a TCP port number (1-65535), not '\uff14'"),
        (["--host", ""], "--host must not be empty"),
        (["--connect", "tcp:h:1", "--host", "h"], "give --connect or --host/--port, not both"),
    ],
)
def test_bad_options(argv: list[str], message: str) -> None:
    """Bad values are refused with a message saying what is wrong."""
    with pytest.raises(UsageError) as caught:
        parse(*argv)
    assert str(caught.value) == message


def test_bad_endpoint_string() -> None:
    """A malformed endpoint string is a usage error, not a traceback."""
    options = parse("--connect", "bogus:thing")
    with pytest.raises(UsageError, match="is not a client endpoint string"):
        options.endpoint(the_reactor())


@pytest.mark.parametrize(
    ("host", "text"),
    [("127.0.0.1", "127.0.0.1:1"), ("::1", "[::1]:1"), ("example.org", "example.org:1")],
)
def test_format_host_port(host: str, text: str) -> None:
    """HOST:PORT, IPv6 addresses in brackets."""
    assert format_host_port(host, 1) == text


@pytest.mark.parametrize(
    ("exception", "text"),
    [
        (error.ConnectionRefusedError(), "connection refused (is the server running?)"),
        (error.DNSLookupError(), "unknown host"),
        (error.TimeoutError(), "timed out"),
        (error.NoRouteError(), "no route to host"),
        (error.ConnectError(osError="Network is unreachable"), "Network is unreachable"),
        (error.ConnectError(osError=2), "No such file or directory"),
    ],
)
def test_describe_connect_error(exception: Exception, text: str) -> None:
    """Each way of failing to connect reads as one line naming the address."""
    assert describe_connect_error(Failure(exception), "h:1") == f"cannot connect to h:1: {text}"


def test_completer() -> None:
    """Tab completes the first word from the commands, and nothing after it."""
    line = {"before": ""}
    complete = completer(("who", "kick", "quit"), lambda: line["before"])
    assert [complete("", i) for i in range(4)] == ["who ", "kick ", "quit ", None]
    assert (complete("k", 0), complete("k", 1)) == ("kick ", None)
    line["before"] = "kick "
    assert complete("q", 0) is None


class Triggers:
    """The system event trigger part of a reactor."""

    def __init__(self) -> None:
        self.before: list[tuple[Any, ...]] = []

    def addSystemEventTrigger(self, phase: str, event: str, f: Any) -> tuple[Any, ...]:
        """Keep a trigger; its handle is the tuple kept."""
        handle = (phase, event, f)
        self.before.append(handle)
        return handle

    def removeSystemEventTrigger(self, handle: tuple[Any, ...]) -> None:
        """Forget a trigger (an unknown one is a ValueError, as in Twisted)."""
        self.before.remove(handle)

    def shutdown(self) -> None:
        """Run the triggers as a stopping reactor does."""
        for _, _, f in self.before:
            f()


def test_before_shutdown() -> None:
    """The goodbye runs once at shutdown; withdrawn before, it does not run."""
    reactor = Triggers()
    calls: list[str] = []
    withdraw = before_shutdown(reactor, lambda: calls.append("withdrawn"))
    kept = before_shutdown(reactor, lambda: calls.append("kept"))
    withdraw()
    reactor.shutdown()
    kept()  # after it ran, withdrawing does not touch the reactor
    assert calls == ["kept"]
    assert len(reactor.before) == 1


@pytest.mark.parametrize(
    ("width", "columns", "sequence"),
    [
        (2, 80, "\r\x1b[J"),
        (80, 80, "\r\x1b[J"),
        (81, 80, "\r\x1b[1A\x1b[J"),
        (200, 80, "\r\x1b[2A\x1b[J"),
        (10, 0, "\r\x1b[J"),
    ],
)
def test_erase_input(width: int, columns: int, sequence: str) -> None:
    """Erasing the line being typed goes up one row for each row it wraps onto."""
    assert erase_input(width, columns) == sequence


# TLS: the server's certificate is checked before anything is sent.


@pytest.mark.parametrize(
    ("description", "host"),
    [
        ("tls:example.org:4443", "example.org"),
        ("tls:example.org:4443:trustRoots=/etc/ca", "example.org"),
        ("tls:host=example.org:port=4443", "example.org"),
        ("tls:port=4443:host=\\:\\:1", "::1"),
        ("ssl:host=10.0.0.1:port=4443", "10.0.0.1"),
        ("tcp:host=example.org:port=4000", "example.org"),
        ("unix:/run/guessgame.sock", "/run/guessgame.sock"),
        ("tls:", None),
    ],
)
def test_endpoint_host(description: str, host: str | None) -> None:
    """The host an endpoint string names is read as Twisted reads it."""
    assert endpoint_host(description) == host


@pytest_twisted.ensureDeferred
async def test_tls_to_a_plain_server() -> None:
    """tls: to a server that does not speak TLS: one line saying the handshake failed."""
    from twisted.internet import reactor

    from tests.clients import RecorderFactory
    from tests.common import listen

    port = await listen(RecorderFactory())  # greets in plain text
    address = f"tls:localhost:{port.getHost().port}"
    try:
        with pytest.raises(ClientError) as caught:
            await connect(reactor, parse("--connect", address), Greeted)
    finally:
        await port.stopListening()
    assert str(caught.value) == (
        f"cannot connect to {address}: the TLS handshake failed (wrong version number)"
    )


class Greeted(protocol.Protocol):
    """A client protocol that only records what reaches it."""

    def __init__(self) -> None:
        self.made = False
        self.data = b""

    def connectionMade(self) -> None:
        """Record that the connection reached the protocol."""
        self.made = True

    def dataReceived(self, data: bytes) -> None:
        """Record what the server sent."""
        self.data += data


@pytest_twisted.ensureDeferred
async def test_tls_checked_server(tls_listen: TLSListeners, tmp_path: Any) -> None:
    """A server whose certificate passes the check: the protocol is connected."""
    from twisted.internet import reactor

    key, cert = make_certificate(tmp_path, "server")
    listener = await tls_listen(key, cert)
    roots = trust_roots(tmp_path, cert)
    options = parse("--connect", f"tls:localhost:{listener.number}:trustRoots={roots}")
    client = await connect(reactor, options, Greeted)
    assert client.made
    client.transport.write(b"quit\r\n")
    client.transport.loseConnection()


@pytest.mark.parametrize("case", sorted(TLS_FAILURES))
@pytest_twisted.ensureDeferred
async def test_tls_check_fails(
    tls_listen: TLSListeners, tmp_path: Any, observe_errors: list[Any], case: str
) -> None:
    """A certificate that fails the check: one clear error, and nothing reaches either side."""
    from twisted.internet import reactor

    key, cert, roots = tls_failure(tmp_path, case)
    listener = await tls_listen(key, cert)
    built: list[Greeted] = []

    def build() -> Greeted:
        built.append(Greeted())
        return built[-1]

    address = f"tls:localhost:{listener.number}:trustRoots={roots}"
    with pytest.raises(ClientError) as caught:
        await connect(reactor, parse("--connect", address), build)
    assert str(caught.value) == f"cannot connect to {address}: {TLS_FAILURES[case]}"
    assert listener.received == b""
    assert not any(client.made for client in built)
    # Twisted logs its own check's error for a certificate without subjectAltName.
    observe_errors[:] = [e for e in observe_errors if "verifying certificate" not in str(e)]
