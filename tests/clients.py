"""Harness for the client tests: a daemon in this process, clients as processes.

`start_daemon` builds the service tree of ``twistd guessgame`` with
`guessgame.tap` on free loopback ports and a seeded Random, so a test knows
the secret.  `spawn` runs ``python -m guessgame.clients.play`` (``pclient``) or ``clients.admin``
through a pipe or a pseudo-terminal; `ClientProcess.expect` waits, bounded,
for text to appear in what it printed.  Nothing blocks the reactor.
"""

from __future__ import annotations

import os
import pathlib
import random
import re
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import pytest_twisted
from twisted.application.service import MultiService
from twisted.internet import defer, protocol
from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.internet.interfaces import IOpenSSLServerConnectionCreator
from twisted.python.failure import Failure
from zope.interface import implementer

from guessgame.game import Game
from guessgame.tap import Options, makeService

#: Bounds for waiting on a client, in seconds.
EXPECT_TIMEOUT = 15.0
RUN_TIMEOUT = 30.0

#: Terminal control sequences readline writes, and carriage returns.
CONTROL = re.compile(rb"\x1b\[[0-9;?]*[A-Za-z]|\x1b[=>]|\r|\x07")

#: The clients a test spawns, by the names of the original coursework clients.
CLIENT_MODULES = {"pclient": "guessgame.clients.play", "aclient": "guessgame.clients.admin"}


@dataclass
class Daemon:
    """A running service tree and the ports it bound."""

    top: MultiService
    game: Game
    player_port: int
    admin_port: int

    def stop(self) -> defer.Deferred[Any]:
        """Stop the service (once)."""
        if not self.top.running:
            return defer.succeed(None)
        return defer.maybeDeferred(self.top.stopService)


def start_daemon(*args: str, seed: int = 1) -> Daemon:
    """The daemon of ``twistd guessgame ARGS`` on two free loopback ports."""
    from twisted.internet import reactor

    options = Options()
    options.parseOptions(
        [
            "--player", "tcp:0:interface=127.0.0.1",
            "--admin", "tcp:0:interface=127.0.0.1",
            "--web", "off",
            "--db", ":memory:",
            *args,
        ]
    )  # fmt: skip
    top = makeService(options, reactor=reactor)
    game = top.getServiceNamed("store").getServiceNamed("game")
    game.rng = random.Random(seed)
    top.startService()
    ports = [top.getServiceNamed(role).port.getHost().port for role in ("player", "admin")]
    return Daemon(top, game, ports[0], ports[1])


@pytest.fixture
def daemon() -> Iterator[Daemon]:
    """A daemon with the default options, stopped after the test."""
    running = start_daemon()
    yield running
    pytest_twisted.blockon(running.stop())


class ClientProcess(protocol.ProcessProtocol):
    """A client program: what it prints, how it ends, and a way to type to it."""

    def __init__(self) -> None:
        self.out = b""
        self.err = b""
        self.seen = 0  # how much of the output `expect` has consumed
        self.code: int | None = None
        self.ended: defer.Deferred[int] = defer.Deferred()
        self._waiting: list[tuple[re.Pattern[str], defer.Deferred[re.Match[str]]]] = []

    @property
    def text(self) -> str:
        """Everything printed so far, terminal control sequences removed."""
        return CONTROL.sub(b"", self.out).decode("utf-8", "replace")

    def outReceived(self, data: bytes) -> None:
        """Keep the output; wake whoever waits for text in it."""
        self.out += data
        self._check()

    def errReceived(self, data: bytes) -> None:
        """Keep what went to standard error."""
        self.err += data

    def processEnded(self, reason: Failure) -> None:
        """Record the exit status; fail whoever still waits for output."""
        value = reason.value
        assert isinstance(value, ProcessDone | ProcessTerminated)
        self.code = value.exitCode if value.exitCode is not None else -(value.signal or 0)
        self._check()
        waiting, self._waiting = self._waiting, []
        for pattern, d in waiting:
            d.errback(AssertionError(f"ended before {pattern.pattern!r}; output:\n{self.text}"))
        self.ended.callback(self.code)

    def _check(self) -> None:
        text = self.text
        for entry in list(self._waiting):
            pattern, d = entry
            match = pattern.search(text, self.seen)
            if match is not None:
                self._waiting.remove(entry)
                self.seen = match.end()
                d.callback(match)

    def expect(self, pattern: str, timeout: float = EXPECT_TIMEOUT) -> defer.Deferred[Any]:
        """Wait for ``pattern`` (a regex) past the output consumed so far."""
        from twisted.internet import reactor

        d: defer.Deferred[re.Match[str]] = defer.Deferred()
        self._waiting.append((re.compile(pattern, re.MULTILINE), d))
        self._check()
        if self.code is not None and not d.called:
            self._waiting.pop()
            d.errback(AssertionError(f"ended before {pattern!r}; output:\n{self.text}"))

        def timed_out(result: object, seconds: float) -> None:
            raise AssertionError(
                f"no {pattern!r} within {seconds} s; output:\n{self.text!r}\n{self.err!r}"
            )

        return d.addTimeout(timeout, reactor, onTimeoutCancel=timed_out)

    def type(self, text: str) -> None:
        """Send ``text`` to the program's standard input."""
        assert self.transport is not None
        self.transport.write(text.encode("utf-8"))

    def close_stdin(self) -> None:
        """End the program's standard input."""
        assert self.transport is not None
        self.transport.closeStdin()

    def finish(self, timeout: float = RUN_TIMEOUT) -> defer.Deferred[int]:
        """The exit status, once the program has ended (bounded)."""
        from twisted.internet import reactor

        if self.code is not None:
            return defer.succeed(self.code)
        d: defer.Deferred[int] = defer.Deferred()

        def ended(code: int) -> int:
            if not d.called:
                d.callback(code)
            return code

        self.ended.addCallback(ended)
        return d.addTimeout(timeout, reactor)

    def kill(self) -> None:
        """Kill the program if it still runs."""
        if self.code is None and self.transport is not None:
            try:
                self.transport.signalProcess("KILL")
            except OSError:
                pass

    @property
    def stdout_lines(self) -> list[str]:
        """What went to standard output, as lines."""
        return self.text.splitlines()

    @property
    def stderr_text(self) -> str:
        """What went to standard error."""
        return self.err.decode("utf-8", "replace")


#: The repository, where the Makefile is.
ROOT = pathlib.Path(__file__).resolve().parent.parent


def make_command(target: str, args: str) -> list[str]:
    """``make TARGET ARGS=args`` in the repository, quiet; skips the test without make or .venv.

    The Makefile runs the programs of the repository's ``.venv``: only
    when the tests run from that venv do those programs hold this code.
    """
    make = shutil.which("make")
    if make is None:
        pytest.skip("make is not installed")
    if pathlib.Path(sys.prefix).resolve() != (ROOT / ".venv").resolve():
        pytest.skip("the tests do not run from the repository's .venv, which make uses")
    return [make, "-s", "--no-print-directory", "-C", str(ROOT), target, f"ARGS={args}"]


class Spawner:
    """Starts client processes and kills any left running at the end."""

    def __init__(self) -> None:
        self.processes: list[ClientProcess] = []

    def __call__(
        self,
        module: str,
        *args: str,
        pty: bool = False,
        env: dict[str, str] | None = None,
    ) -> ClientProcess:
        """Run client ``module`` (``pclient`` or ``aclient``) with ``args``, in a pty if ``pty``."""
        from twisted.internet import reactor

        environment = {
            key: value
            for key, value in os.environ.items()
            if key not in ("GUESSGAME_ADMIN_TOKEN", "PYTEST_CURRENT_TEST")
        }
        environment.update({"TERM": "xterm", "PYTHONUNBUFFERED": "1", "INPUTRC": os.devnull})
        environment.update(env or {})
        process = ClientProcess()
        reactor.spawnProcess(
            process,
            sys.executable,
            [sys.executable, "-m", CLIENT_MODULES[module], *args],
            env=environment,
            usePTY=pty,
        )
        self.processes.append(process)
        return process

    def program(self, argv: list[str], *, pty: bool = False) -> ClientProcess:
        """Run any program (``argv[0]`` a path), in a pseudo-terminal if ``pty``."""
        from twisted.internet import reactor

        # A make of ours started from `make test` is a make of its own.
        outer = ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "GUESSGAME_ADMIN_TOKEN")
        environment = {key: value for key, value in os.environ.items() if key not in outer}
        environment["TERM"] = "xterm"
        process = ClientProcess()
        reactor.spawnProcess(process, argv[0], argv, env=environment, usePTY=pty)
        self.processes.append(process)
        return process

    def cleanup(self) -> None:
        """Kill what still runs and wait (bounded) for it to end."""
        from twisted.internet import reactor

        running = [p for p in self.processes if p.code is None]
        for process in running:
            process.kill()
        if running:
            waits = [p.ended.addTimeout(5, reactor).addErrback(lambda _: None) for p in running]
            pytest_twisted.blockon(defer.DeferredList(waits))


@pytest.fixture
def spawn() -> Iterator[Spawner]:
    """Start client processes; they are killed after the test if still running."""
    spawner = Spawner()
    yield spawner
    spawner.cleanup()


@defer.inlineCallbacks
def run(spawner: Spawner, module: str, *args: str, stdin: str = "", **kw: Any) -> Any:
    """Run a client with ``stdin`` to its end; return the process (with ``code``)."""
    process = spawner(module, *args, **kw)
    if stdin:
        process.type(stdin)
    process.close_stdin()
    yield process.finish()
    return process


# TLS: certificates made here, and a loopback TLS listener that records.


def make_certificate(
    directory: Any,
    stem: str,
    *,
    names: tuple[str, ...] = ("localhost",),
    san: bool = True,
) -> tuple[str, str]:
    """A key and a self-signed certificate for ``names`` in ``directory``; their paths.

    The first name is the subject's common name; with ``san`` every name
    is also in the subjectAltName (the field clients check), without it
    the certificate has none.
    """
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
    )
    if san:
        alt = [x509.DNSName(name) for name in names]
        builder = builder.add_extension(x509.SubjectAlternativeName(alt), critical=False)
    cert = builder.sign(key, hashes.SHA256())
    key_path = directory / f"{stem}.key"
    cert_path = directory / f"{stem}.pem"
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return str(key_path), str(cert_path)


def trust_roots(directory: Any, *certs: str) -> str:
    """A ``trustRoots=`` folder holding ``certs``; its path."""
    import pathlib

    roots = directory / "roots"
    roots.mkdir(exist_ok=True)
    for cert in certs:
        path = pathlib.Path(cert)
        (roots / path.name).write_bytes(path.read_bytes())
    return str(roots)


@implementer(IOpenSSLServerConnectionCreator)
class ServerContext:
    """Server-side TLS connections with a key and a certificate read from files."""

    def __init__(self, key: str, cert: str) -> None:
        from OpenSSL import SSL

        self.context = SSL.Context(SSL.TLS_SERVER_METHOD)
        self.context.use_certificate_file(cert)
        self.context.use_privatekey_file(key)

    def serverConnectionForTLS(self, tlsProtocol: Any) -> Any:  # noqa: N803 (the interface's name)
        """One server connection."""
        from OpenSSL import SSL

        return SSL.Connection(self.context, None)


class Recorder(protocol.Protocol):
    """A stand-in player port: greets, answers each line, keeps every byte it got.

    ``quit`` gets ``Goodbye!`` and the connection stays open, as a server
    that is slow to close would leave it.  Anything else is ``Too low!``.
    """

    factory: RecorderFactory

    def connectionMade(self) -> None:
        """Greet as the player port does."""
        self.factory.connections.append(self)
        self.transport.write(  # type: ignore[union-attr]
            b"You are now connected to the server!\r\nPick a number between 1-30\r\n"
        )

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:
        """Gone: nothing to drop at the end."""
        self.factory.connections.remove(self)

    def dataReceived(self, data: bytes) -> None:
        """Keep what arrived; answer each complete line."""
        self.factory.received += data
        for line in data.splitlines():
            leaving = line.strip() == b"quit"
            reply = b"Goodbye!" if leaving else b"Too low! Pick a number between 1-30"
            self.transport.write(reply + b"\r\n")  # type: ignore[union-attr]


class RecorderFactory(protocol.Factory):
    """Builds `Recorder` connections and holds what they received."""

    protocol = Recorder

    def __init__(self) -> None:
        self.received = b""
        self.connections: list[Recorder] = []


@dataclass
class TLSListener:
    """A `Recorder` listening with TLS on a free loopback port."""

    factory: RecorderFactory
    port: Any

    @property
    def number(self) -> int:
        """The port number."""
        return int(self.port.getHost().port)

    @property
    def received(self) -> bytes:
        """Every byte any client sent, after TLS."""
        return self.factory.received

    def stop(self) -> defer.Deferred[Any]:
        """Drop every connection and stop listening."""
        for connection in list(self.factory.connections):
            connection.transport.abortConnection()  # type: ignore[union-attr]
        return defer.maybeDeferred(self.port.stopListening)


class TLSListeners:
    """Starts `TLSListener`s and stops them after the test."""

    def __init__(self) -> None:
        self.started: list[TLSListener] = []

    @defer.inlineCallbacks
    def __call__(self, key: str, cert: str) -> Any:
        """A `TLSListener` serving ``cert``."""
        from twisted.internet import endpoints, reactor

        factory = RecorderFactory()
        endpoint = endpoints.SSL4ServerEndpoint(
            reactor, 0, ServerContext(key, cert), interface="127.0.0.1"
        )
        port = yield endpoint.listen(factory)
        listener = TLSListener(factory, port)
        self.started.append(listener)
        return listener


@pytest.fixture
def tls_listen() -> Iterator[TLSListeners]:
    """Start TLS listeners; each is stopped after the test."""
    listeners = TLSListeners()
    yield listeners
    for listener in listeners.started:
        pytest_twisted.blockon(listener.stop())


#: The ways a server's certificate fails the client's check, and what the client says.
TLS_FAILURES = {
    "untrusted": "the server's certificate is not trusted (certificate verify failed)",
    "wrong-name": "the server's certificate is not for localhost",
    "no-san": "the server's certificate names no host (no subjectAltName) to check",
}


def tls_failure(directory: Any, case: str) -> tuple[str, str, str]:
    """Key, certificate and ``trustRoots`` folder for a server that fails the check ``case``."""
    if case == "untrusted":
        key, cert = make_certificate(directory, "server")
        _, other = make_certificate(directory, "other")
        return key, cert, trust_roots(directory, other)
    if case == "wrong-name":
        key, cert = make_certificate(directory, "server", names=("other.example",))
    else:
        key, cert = make_certificate(directory, "server", san=False)
    return key, cert, trust_roots(directory, cert)
