"""Admin over mutual TLS: only a client certificate the CA signed gets in."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from OpenSSL import SSL
from twisted.internet import defer, endpoints, protocol
from twisted.python import usage
from twisted.python.failure import Failure

from guessgame.admin.protocol import AdminFactory
from guessgame.ops.tls import load_ca, mutual_tls_endpoint
from guessgame.tap import Options
from tests.certs import PKI, Issued, make_pki
from tests.common import LineClient, make_game
from tests.e2e import WAIT, Daemon

#: Twisted's tls: client endpoint still hands pyOpenSSL objects to pyOpenSSL.
CLIENT_WARNING = "ignore:Passing pyOpenSSL (X509|PKey) objects is deprecated"


@pytest.fixture
def pki(tmp_path: Path) -> PKI:
    """A CA, a server certificate and two client certificates, on disk."""
    return make_pki(tmp_path)


def server_endpoint(pki: PKI, port: int | str = 0, interface: str = "127.0.0.1") -> str:
    """The ssl: admin endpoint string for the test's server certificate."""
    return f"ssl:{port}:interface={interface}:privateKey={pki.server.key}:certKey={pki.server.cert}"


def client_endpoint(pki: PKI, port: int, client: Issued | None) -> str:
    """The tls: client endpoint string, with a client certificate or without."""
    description = f"tls:127.0.0.1:{port}:trustRoots={pki.ca_dir}"
    if client is not None:
        description += f":certificate={client.cert}:privateKey={client.key}"
    return description


class Recorder(protocol.Protocol):
    """A client that records what arrives and why the connection ended."""

    def __init__(self) -> None:
        self.data = b""
        self.reason: Failure | None = None
        self.lost: defer.Deferred[None] = defer.Deferred()

    def connectionMade(self) -> None:
        """Try the handshake at once (TLS sends it once it can)."""
        self.transport.write(b"Admin-Greetings\r\n")

    def dataReceived(self, data: bytes) -> None:
        """Keep it."""
        self.data += data

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:
        """Keep the reason."""
        self.reason = reason
        self.lost.callback(None)


@pytest_twisted.inlineCallbacks
def listening(pki: PKI) -> Any:
    """An admin port with mutual TLS on a free loopback port."""
    from twisted.internet import reactor

    endpoint = mutual_tls_endpoint(reactor, server_endpoint(pki), str(pki.ca))
    port = yield endpoint.listen(AdminFactory(make_game()))
    return port


@pytest.mark.filterwarnings(CLIENT_WARNING)
@pytest_twisted.inlineCallbacks
def test_a_client_certificate_the_ca_signed_completes_the_handshake(pki: PKI) -> Any:
    """The good client gets OK Admin-Greetings over mutual TLS."""
    from twisted.internet import reactor

    port = yield listening(pki)
    try:
        endpoint = endpoints.clientFromString(
            reactor, client_endpoint(pki, port.getHost().port, pki.good_client)
        )
        client = yield endpoints.connectProtocol(endpoint, LineClient())
        client.send("Admin-Greetings")
        assert (yield client.next_line(timeout=WAIT)) == "OK Admin-Greetings, 0 players online"
        client.send("count")
        assert (yield client.next_line(timeout=WAIT)) == "OK 0 players"
        yield client.close()
    finally:
        yield port.stopListening()


@pytest.mark.parametrize("who", ["no certificate", "another CA's certificate"])
@pytest.mark.filterwarnings(CLIENT_WARNING)
@pytest_twisted.inlineCallbacks
def test_other_clients_fail_the_tls_handshake(pki: PKI, who: str) -> Any:
    """Without a certificate the CA signed, TLS fails and no line is ever answered."""
    from twisted.internet import reactor

    port = yield listening(pki)
    try:
        client_cert = None if who == "no certificate" else pki.bad_client
        endpoint = endpoints.clientFromString(
            reactor, client_endpoint(pki, port.getHost().port, client_cert)
        )
        recorder = Recorder()
        try:
            yield endpoints.connectProtocol(endpoint, recorder)
        except SSL.Error:
            pass  # refused within the handshake itself (TLS 1.2)
        else:
            yield recorder.lost.addTimeout(WAIT, reactor)
            assert recorder.data == b""
            assert recorder.reason is not None
            assert recorder.reason.check(SSL.Error), recorder.reason
    finally:
        yield port.stopListening()


def test_load_ca_says_what_is_wrong(tmp_path: Path) -> None:
    """A missing or non-PEM CA file is a ValueError naming it."""
    with pytest.raises(ValueError, match=r"cannot read .*nothing\.pem: No such file"):
        load_ca(str(tmp_path / "nothing.pem"))
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    with pytest.raises(ValueError, match=r"junk\.pem holds no PEM certificate"):
        load_ca(str(junk))


# The command line.


def parse(*args: str) -> Options:
    """Options parsed from ``args``."""
    options = Options()
    options.parseOptions(list(args))
    return options


def test_mutual_tls_admin_may_listen_beyond_loopback_without_a_token(pki: PKI) -> None:
    """--admin-ca makes an ssl: admin endpoint on every interface acceptable without a token."""
    options = parse("--admin", server_endpoint(pki, 4001, "0.0.0.0"), "--admin-ca", str(pki.ca))
    assert options["token"] is None
    with pytest.raises(usage.UsageError, match="set --admin-token"):
        parse("--admin", server_endpoint(pki, 4001, "0.0.0.0"))


@pytest.mark.parametrize(
    ("admin", "ca", "message"),
    [
        (
            "tcp:4001:interface=127.0.0.1",
            "ca.pem",
            "^--admin-ca needs an ssl: admin endpoint (like ssl:4001:privateKey=key.pem:"
            "certKey=cert.pem), not 'tcp:4001:interface=127.0.0.1'$",
        ),
        ("SSL", "missing.pem", "^--admin-ca: cannot read .*missing.pem: No such file"),
        ("SSL", "server.key", "^--admin-ca: .*server.key holds no PEM certificate$"),
    ],
    ids=["not ssl", "missing file", "not a certificate"],
)
def test_bad_admin_ca_is_a_usage_error(pki: PKI, admin: str, ca: str, message: str) -> None:
    """--admin-ca without an ssl: endpoint, or with a file that is no CA, says what to fix."""
    if admin == "SSL":
        admin = server_endpoint(pki, 4001)
    with pytest.raises(usage.UsageError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse("--admin", admin, "--admin-ca", str(pki.ca.parent / ca))


# End to end: the daemon and guessgame-admin as processes.


def guessgame_admin(*args: str) -> subprocess.CompletedProcess[str]:
    """Run ``guessgame-admin`` with ``args``; its result."""
    program = Path(sys.executable).with_name("guessgame-admin")
    return subprocess.run(
        [str(program), *args], capture_output=True, text=True, timeout=WAIT, check=False
    )


def test_guessgame_admin_connects_with_a_client_certificate(pki: PKI) -> None:
    """guessgame-admin --connect tls:... with the good certificate runs a command; others fail."""
    with Daemon(
        "--admin", server_endpoint(pki), "--admin-ca", str(pki.ca), "--db", ":memory:"
    ) as daemon:
        port = daemon.ports["admin"]
        good = guessgame_admin("--connect", client_endpoint(pki, port, pki.good_client), "count")
        assert (good.returncode, good.stdout) == (0, "0 players\n"), good.stderr
        for client in (None, pki.bad_client):
            bad = guessgame_admin("--connect", client_endpoint(pki, port, client), "count")
            assert bad.returncode == 1, bad
            assert bad.stdout == ""
            assert "Traceback" not in bad.stderr
