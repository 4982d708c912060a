"""What the two clients share: where to connect, clear errors, the console.

`ClientOptions` reads ``--host``/``--port`` or ``--connect``; `connect`
opens the connection and turns every way of failing into `ClientError`,
one line a person can act on.  `open_console` reads the user's lines from
a terminal (with line editing and history) or from a pipe, and prints
lines from the network without garbling what the user is typing.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import sys
import threading
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, NoReturn, Protocol, TypeVar, cast

from twisted.internet import defer, endpoints, error, fdesc, stdio
from twisted.internet.interfaces import (
    IHandshakeListener,
    INegotiated,
    IProtocol,
    IStreamClientEndpoint,
)
from twisted.internet.protocol import Factory, connectionDone
from twisted.internet.protocol import Protocol as BaseProtocol
from twisted.protocols.basic import LineReceiver
from twisted.python import usage
from twisted.python.failure import Failure
from zope.interface import implementer

from guessgame.wire.lines import Transport

__all__ = [
    "CheckedConnection",
    "ClientError",
    "ClientOptions",
    "Console",
    "PipeConsole",
    "TerminalConsole",
    "before_shutdown",
    "check_certificate",
    "completer",
    "connect",
    "describe_connect_error",
    "describe_tls_error",
    "endpoint_host",
    "erase_input",
    "error_line",
    "format_host_port",
    "log_to_stderr",
    "open_console",
    "print_line",
    "run_main",
]

#: How long to wait for a TCP connection before giving up, in seconds.
CONNECT_TIMEOUT = 10

#: Exit statuses: done, something went wrong, the command line is wrong.
EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2

P = TypeVar("P", bound=IProtocol)


class ClientError(Exception):
    """A failure to report as one line on standard error, exit status 1."""


class ClientOptions(usage.Options):
    """``--host``, ``--port`` and ``--connect``: where the server is."""

    default_port = 0

    optParameters: list[list[Any]] = [
        ["host", None, None, "Host name or address of the server [default: 127.0.0.1]."],
        ["port", None, None, "TCP port of the server."],
        ["connect", None, None, "A Twisted client endpoint string instead of --host/--port."],
    ]

    def __init__(self) -> None:
        super().__init__()
        port = self.default_port
        self.docs["port"] = f"TCP port of the server [default: {port}]."
        self.docs["connect"] = (
            "A Twisted client endpoint string instead of --host/--port "
            f"(tcp:host=127.0.0.1:port={port}, tls:example.org:{port}, unix:/path)."
        )

    def opt_version(self) -> NoReturn:
        """Show the version of guessgame and exit."""
        from importlib.metadata import version

        print_line(f"guessgame {version('guessgame')}")
        sys.exit(0)

    def postOptions(self) -> None:
        """Check --port, and that --connect comes alone."""
        if self["connect"] is not None:
            if self["host"] is not None or self["port"] is not None:
                raise usage.UsageError("give --connect or --host/--port, not both")
            return
        if self["host"] is None:
            self["host"] = "127.0.0.1"
        if self["host"] == "":
            raise usage.UsageError("--host must not be empty")
        port = self["port"] if self["port"] is not None else str(self.default_port)
        if not (port.isascii() and port.isdigit()) or not 0 < int(port) < 65536:
            raise usage.UsageError(f"--port must be a TCP port number (1-65535), not {port!r}")
        self["port"] = int(port)

    @property
    def address(self) -> str:
        """The server's address as the user gave it, for messages."""
        if self["connect"] is not None:
            return str(self["connect"])
        return format_host_port(self["host"], self["port"])

    def endpoint(self, reactor: Any) -> IStreamClientEndpoint:
        """The client endpoint these options name; `usage.UsageError` if it is malformed."""
        if self["connect"] is None:
            return endpoints.HostnameEndpoint(
                reactor, self["host"], self["port"], timeout=CONNECT_TIMEOUT
            )
        try:
            endpoint: IStreamClientEndpoint = endpoints.clientFromString(reactor, self["connect"])
        except Exception as e:  # each endpoint parser fails in its own way
            raise usage.UsageError(
                f"--connect: {self['connect']!r} is not a client endpoint string "
                f"(like tcp:host=127.0.0.1:port=4000): {e}"
            ) from None
        return endpoint


def format_host_port(host: str, port: int) -> str:
    """``HOST:PORT``, with an IPv6 address in brackets."""
    try:
        if ipaddress.ip_address(host).version == 6:
            return f"[{host}]:{port}"
    except ValueError:
        pass
    return f"{host}:{port}"


def describe_connect_error(failure: Failure, address: str) -> str:
    """One line saying why connecting to ``address`` failed."""
    if failure.check(error.ConnectionRefusedError):
        return f"cannot connect to {address}: connection refused (is the server running?)"
    if failure.check(error.DNSLookupError):
        return f"cannot connect to {address}: unknown host"
    if failure.check(error.TimeoutError, error.UserError):
        return f"cannot connect to {address}: timed out"
    if failure.check(error.NoRouteError):
        return f"cannot connect to {address}: no route to host"
    value = failure.value
    reason = getattr(value, "osError", None) or getattr(value, "strerror", None) or value
    if isinstance(reason, int):
        reason = os.strerror(reason)
    return f"cannot connect to {address}: {reason}"


async def connect(reactor: Any, options: ClientOptions, build: Callable[[], P]) -> P:
    """Connect a protocol from ``build`` to the server; `ClientError` on failure.

    Over TLS the protocol is connected only once the server's certificate
    has passed the check (trusted, and naming the host connected to): a
    server that fails it never gets a byte from us.
    """
    endpoint = options.endpoint(reactor)
    host = options["host"] if options["connect"] is None else endpoint_host(options["connect"])
    address = options.address
    factory = Factory.forProtocol(
        cast(Any, lambda: CheckedConnection(reactor, build, host, address))
    )
    try:
        checked = cast(CheckedConnection, await endpoint.connect(factory))
    except Exception:
        raise ClientError(describe_connect_error(Failure(), address)) from None
    return cast(P, await checked.ready)


def endpoint_host(description: str) -> str | None:
    r"""The host a client endpoint string names (``tls:HOST:PORT``, ``host=HOST``), if any.

    Read as Twisted reads it: fields split at ``:``, ``\`` escapes the
    next character, and ``key=value`` fields are named.
    """
    fields: list[tuple[str | None, str]] = []
    key: str | None = None
    text = ""
    chars = iter(description)
    for char in chars:
        if char == "\\":
            text += next(chars, "")
        elif char == ":":
            fields.append((key, text))
            key, text = None, ""
        elif char == "=" and key is None:
            key, text = text, ""
        else:
            text += char
    fields.append((key, text))
    named = {name: value for name, value in fields if name is not None}
    positional = [value for name, value in fields if name is None][1:]
    host = named["host"] if "host" in named else positional[0] if positional else ""
    return host or None


def check_certificate(certificate: Any, host: str | None) -> str | None:
    """Why the server's certificate does not prove it is ``host``; None when it does."""
    from service_identity import CertificateError, VerificationError
    from service_identity.cryptography import (
        verify_certificate_hostname,
        verify_certificate_ip_address,
    )

    if certificate is None:
        return "the server sent no certificate"
    if host is None:
        return "no host name to check the server's certificate against"
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        ip = None
    try:
        if ip is None:
            verify_certificate_hostname(certificate.to_cryptography(), host)
        else:
            verify_certificate_ip_address(certificate.to_cryptography(), str(ip))
    except CertificateError as e:
        if "subjectAltName" in str(e):
            return "the server's certificate names no host (no subjectAltName) to check"
        return f"the server's certificate cannot be checked: {e}"
    except VerificationError:
        return f"the server's certificate is not for {host}"
    return None


def describe_tls_error(reason: Failure, host: str | None) -> str:
    """Why a TLS connection closed before its handshake completed."""
    from OpenSSL import SSL
    from service_identity import VerificationError

    if reason.check(VerificationError):
        return f"the server's certificate is not for {host}"
    if reason.check(SSL.Error):
        text = str(reason.value)
        if "certificate verify failed" in text:
            return "the server's certificate is not trusted (certificate verify failed)"
        args = getattr(reason.value, "args", ())
        errors = args[0] if args else []
        details = ", ".join(str(e[-1]) for e in errors if isinstance(e, tuple)) or text
        return f"the TLS handshake failed ({details})"
    return "the server closed the connection during the TLS handshake"


@implementer(IHandshakeListener)
class CheckedConnection(BaseProtocol):
    """A new connection, held until the server is known to be who it should be.

    Over TLS, Twisted checks the certificate's trust and host name in the
    handshake, but a certificate with no subjectAltName slips through its
    check; so the host name is checked again here, once the handshake is
    done and before anything is sent or received.  Then the connection is
    handed to the protocol from ``build``, and `ready` fires with it; or
    the connection is aborted and `ready` fails with a `ClientError`.  A
    connection without TLS is handed over at once.
    """

    transport: Any  # a TLS transport, or a TCP or Unix one

    def __init__(
        self, reactor: Any, build: Callable[[], IProtocol], host: str | None, address: str
    ) -> None:
        self.reactor = reactor
        self.build = build
        self.host = host
        self.address = address
        self.inner: IProtocol | None = None
        self.problem: str | None = None
        #: Fires with the connected protocol, or fails with a `ClientError`.
        self.ready: defer.Deferred[IProtocol] = defer.Deferred()
        self._timer: Any = None

    def connectionMade(self) -> None:
        """Hand over at once without TLS; with it, wait (not forever) for the handshake."""
        if INegotiated.providedBy(self.transport):
            self._timer = self.reactor.callLater(CONNECT_TIMEOUT, self._no_handshake)
        else:
            self._hand_over()

    def _no_handshake(self) -> None:
        self._timer = None
        self._refuse(f"no TLS handshake within {CONNECT_TIMEOUT} seconds")

    def handshakeCompleted(self) -> None:
        """Check the server's certificate against the host; hand over or refuse."""
        self._stop_timer()
        problem = check_certificate(self.transport.getPeerCertificate(), self.host)
        if problem is not None:
            self._refuse(problem)
        else:
            self._hand_over()

    def _refuse(self, problem: str) -> None:
        self.problem = problem
        self.transport.abortConnection()

    def _hand_over(self) -> None:
        inner = self.inner = self.build()
        inner.makeConnection(self.transport)
        self.ready.callback(inner)

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def dataReceived(self, data: bytes) -> None:
        """Pass the server's bytes on, once handed over."""
        if self.inner is not None:
            self.inner.dataReceived(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """Tell the protocol; or, before the hand-over, say why it failed."""
        self._stop_timer()
        if self.inner is not None:
            self.inner.connectionLost(reason)
        elif not self.ready.called:
            problem = self.problem or describe_tls_error(reason, self.host)
            self.ready.errback(ClientError(f"cannot connect to {self.address}: {problem}"))


def run_main(
    program: str,
    options: usage.Options,
    argv: list[str] | None,
    main: Callable[[Any, Any], Any],
) -> NoReturn:
    """Parse ``argv`` and run ``main(reactor, options)`` with `task.react`.

    Usage errors exit 2, `ClientError` exits 1; both print one line to
    standard error and neither prints a traceback.
    """
    from twisted.internet import task

    log_to_stderr()
    try:
        options.parseOptions(sys.argv[1:] if argv is None else argv)
    except usage.UsageError as e:
        sys.stderr.write(f"{program}: {e}\nTry '{program} --help' for more information.\n")
        sys.exit(EXIT_USAGE)
    except BrokenPipeError:  # --help | head
        sys.stdout = open(os.devnull, "w")
        sys.exit(EXIT_OK)

    async def guarded(reactor: Any) -> None:
        try:
            status = await main(reactor, options)
        except usage.UsageError as e:
            error_line(program, str(e))
            raise SystemExit(EXIT_USAGE) from None
        except ClientError as e:
            error_line(program, str(e))
            raise SystemExit(EXIT_ERROR) from None
        raise SystemExit(status)

    task.react(lambda reactor: defer.ensureDeferred(guarded(reactor)))


def log_to_stderr() -> None:
    """Print Twisted's warnings and errors on standard error, as text.

    One is left out: Twisted's own certificate check logs a traceback for
    a certificate without subjectAltName, which `CheckedConnection` then
    refuses with one line of its own.
    """
    from service_identity import CertificateError
    from twisted.logger import ILogObserver, LogLevel, eventAsText, globalLogBeginner

    def observe(event: dict[str, Any]) -> None:
        level = event.get("log_level")
        if level is None or level < LogLevel.warn:
            return
        failure = event.get("log_failure")
        if (
            event.get("log_namespace") == "twisted.internet._sslverify"
            and failure is not None
            and failure.check(CertificateError)
        ):
            return
        text = eventAsText(event, includeTimestamp=False, includeSystem=False)
        sys.stderr.write(text + "\n")
        sys.stderr.flush()

    globalLogBeginner.beginLoggingTo([cast(ILogObserver, observe)], redirectStandardIO=False)


def before_shutdown(reactor: Any, leave: Callable[[], object]) -> Callable[[], None]:
    """Call ``leave`` when the reactor is about to stop (Ctrl-C, SIGTERM).

    ``leave`` may return a Deferred to hold the shutdown until it fires.
    Returns a function that withdraws the call, if it has not happened yet.
    """
    fired = False

    def fire() -> object:
        nonlocal fired
        fired = True
        return leave()

    handle = reactor.addSystemEventTrigger("before", "shutdown", fire)

    def withdraw() -> None:
        if not fired:
            reactor.removeSystemEventTrigger(handle)

    return withdraw


def error_line(program: str, text: str) -> None:
    """Print ``program: text`` on standard error."""
    sys.stderr.write(f"{program}: {text}\n")
    sys.stderr.flush()


# The console: the user's side.


class Console(Protocol):
    """Lines from the user, one at a time on request, and lines to show them."""

    def read_line(self) -> defer.Deferred[str | None]:
        """The user's next line (None at end of input)."""

    def show(self, text: str) -> None:
        """Print a line without disturbing a line being typed."""

    def close(self) -> None:
        """Stop reading and give the terminal back as it was."""


def open_console(reactor: Any, prompt: str, commands: Sequence[str] = ()) -> Console:
    """A `TerminalConsole` when standard input and output are terminals, else a `PipeConsole`.

    At a terminal, Tab completes the first word from ``commands``.
    """
    if sys.stdin.isatty() and sys.stdout.isatty():
        try:
            import readline  # noqa: F401  (input() edits lines once it is loaded)
        except ImportError:
            pass
        else:
            return TerminalConsole(reactor, prompt, commands)
    return PipeConsole(reactor)


def completer(
    commands: Sequence[str], before: Callable[[], str]
) -> Callable[[str, int], str | None]:
    """A readline completer of ``commands``, for the first word only.

    ``before`` gives the text of the line before the word being completed.
    """

    def complete(text: str, state: int) -> str | None:
        if before().strip():
            return None
        matches = [command + " " for command in commands if command.startswith(text.lower())]
        return matches[state] if state < len(matches) else None

    return complete


def print_line(text: str) -> None:
    """Print one line on standard output, at once."""
    _write(text + "\n")


def _write(text: str) -> None:
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:
        # Nobody reads our output any more (| head): keep playing quietly.
        sys.stdout = open(os.devnull, "w")


class PipeConsole(LineReceiver):
    """The user's lines from a pipe or file, through `twisted.internet.stdio`."""

    delimiter = b"\n"
    MAX_LENGTH = 65536
    transport: Transport  # type: ignore[assignment]

    def __init__(self, reactor: Any) -> None:
        self._lines: deque[str | None] = deque()
        self._waiting: defer.Deferred[str | None] | None = None
        # StandardIO makes the descriptors it writes to non-blocking, which
        # would leak to a terminal we share with the shell: give it no
        # output of ours (we print with ordinary writes) but /dev/null.
        self._devnull = os.open(os.devnull, os.O_WRONLY)
        self._stdio = stdio.StandardIO(  # type: ignore[call-arg]
            self, stdout=self._devnull, reactor=reactor
        )

    def lineReceived(self, line: bytes) -> None:
        """Queue a line; stop reading until it is asked for."""
        self._push(line.rstrip(b"\r").decode("utf-8", "replace"))

    def lineLengthExceeded(self, line: bytes) -> None:
        """A line too long to be a command: pass its start on as text."""
        self._push(line[: self.MAX_LENGTH].decode("utf-8", "replace"))

    def connectionLost(self, reason: Failure | None = None) -> None:
        """End of input; a last line without a line end still counts."""
        if self._buffer:
            buffered, self._buffer = self._buffer, b""
            self._push(buffered.rstrip(b"\r").decode("utf-8", "replace"))
        self._push(None)

    def _push(self, line: str | None) -> None:
        if self._waiting is not None:
            d, self._waiting = self._waiting, None
            d.callback(line)
        else:
            self._lines.append(line)
            if self.transport is not None and line is not None:
                self.transport.pauseProducing()

    def read_line(self) -> defer.Deferred[str | None]:
        """The next line, or None at end of input."""
        if self._lines:
            line = self._lines.popleft()
            if not self._lines and self.transport is not None:
                self.transport.resumeProducing()
            return defer.succeed(line)
        self._waiting = defer.Deferred()
        if self.transport is not None:
            self.transport.resumeProducing()
        return self._waiting

    def show(self, text: str) -> None:
        """Print a line."""
        _write(text + "\n")

    def close(self) -> None:
        """Stop reading standard input."""
        if not self._stdio.disconnected:
            self._stdio.loseConnection()
        # A terminal's non-blocking flag is shared with the shell: put it back.
        if os.isatty(0):
            fdesc.setBlocking(0)


class TerminalConsole:
    """The user's lines from a terminal, read with `readline` in a thread.

    `input` blocks, so it runs in a thread of its own, one line per
    `read_line`; the reactor gets each line back with ``callFromThread``.
    Lines printed while the user types go above the line being edited,
    which readline then draws again.  The thread is a daemon: it may be
    waiting in `input` when the program exits, so `close` puts back the
    terminal settings of the start.
    """

    def __init__(self, reactor: Any, prompt: str, commands: Sequence[str] = ()) -> None:
        import readline
        import termios

        self._reactor = reactor
        self.prompt = prompt
        self._waiting: defer.Deferred[str | None] | None = None
        self._wanted = threading.Event()
        self._editing = False
        self._closed = False
        self._fd = sys.stdin.fileno()
        self._saved = termios.tcgetattr(self._fd)
        self._redraw = _forced_redraw(readline)
        readline.set_pre_input_hook(self._started_editing)
        readline.set_completer(
            completer(commands, lambda: readline.get_line_buffer()[: readline.get_begidx()])
        )
        readline.parse_and_bind("tab: complete")
        threading.Thread(target=self._read, name="console", daemon=True).start()

    def _started_editing(self) -> None:
        # Runs in the reading thread once readline has drawn the prompt.
        self._editing = True

    def _read(self) -> None:
        while True:
            self._wanted.wait()
            self._wanted.clear()
            try:
                line: str | None = input(self.prompt)
            except (EOFError, OSError):
                line = None
            except UnicodeDecodeError:
                line = ""
            self._editing = False
            if self._closed:
                return
            self._reactor.callFromThread(self._deliver, line)
            if line is None:
                return

    def _deliver(self, line: str | None) -> None:
        if line is None:
            _write("\n")  # Ctrl-D leaves the cursor after the prompt
        if self._waiting is not None:
            d, self._waiting = self._waiting, None
            d.callback(line)

    def read_line(self) -> defer.Deferred[str | None]:
        """The user's next line, or None at end of input (Ctrl-D)."""
        self._waiting = defer.Deferred()
        self._wanted.set()
        return self._waiting

    def show(self, text: str) -> None:
        """Print a line above the one being typed, and draw that one again."""
        if not self._editing:
            _write(text + "\n")
            return
        import readline

        typed = readline.get_line_buffer()
        erase = erase_input(len(self.prompt) + len(typed), shutil.get_terminal_size().columns)
        if self._redraw is not None:
            _write(f"{erase}{text}\n")
            self._redraw()
        else:
            _write(f"{erase}{text}\n{self.prompt}{typed}")

    def close(self) -> None:
        """Give the terminal back with the settings it had at the start."""
        import termios

        if self._closed:
            return
        self._closed = True
        if self._editing:
            _write("\n")
        self._editing = False
        try:
            termios.tcsetattr(self._fd, termios.TCSADRAIN, self._saved)
        except termios.error:
            pass


def erase_input(width: int, columns: int) -> str:
    """The control sequence that erases a prompt and input ``width`` characters wide.

    The cursor is taken to be at the end of the input, which wraps onto
    further rows of a terminal ``columns`` wide.
    """
    rows = (width - 1) // columns if columns > 0 and width > 0 else 0
    return "\r" + (f"\x1b[{rows}A" if rows else "") + "\x1b[J"


def _forced_redraw(readline: Any) -> Callable[[], object] | None:
    """GNU readline's ``rl_forced_update_display``, if the library has it.

    It draws the prompt and the line being edited afresh, cursor included,
    after we printed over them; Python's `readline` module does not offer it.
    """
    import ctypes

    try:
        library = ctypes.CDLL(readline.__file__)
        redraw = library.rl_forced_update_display
    except (OSError, AttributeError):
        return None
    redraw.restype = ctypes.c_int
    redraw.argtypes = []
    return redraw
