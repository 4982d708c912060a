"""The web port on the command line and in the service tree, and in a real daemon."""

from __future__ import annotations

import json
import ssl
import urllib.request
from pathlib import Path

import pytest
from twisted.internet.task import Clock
from twisted.python import usage
from twisted.web.server import Site

from guessgame.daemon import Listener
from guessgame.tap import Options, makeService
from tests.certs import make_pki
from tests.e2e import Daemon


def parse(*argv: str) -> Options:
    """Options parsed from ``argv``."""
    options = Options()
    options.parseOptions(list(argv))
    return options


def test_web_default_is_tcp_4002() -> None:
    """--web defaults to tcp:4002."""
    assert parse()["web"] == "tcp:4002"


def test_bad_web_endpoint_is_a_usage_error() -> None:
    """A --web that is not an endpoint string is a UsageError naming --web."""
    with pytest.raises(usage.UsageError, match=r"^--web: 'nonsense:1' is not an endpoint"):
        parse("--web", "nonsense:1")


def test_service_tree_has_a_web_listener_sharing_the_player_limits() -> None:
    """makeService adds a web listener whose site plays through the player port's factory."""
    options = parse(
        "--player", "tcp:0:interface=127.0.0.1",
        "--admin", "tcp:0:interface=127.0.0.1",
        "--web", "tcp:0:interface=127.0.0.1",
    )  # fmt: skip
    top = makeService(options, reactor=Clock())
    web = top.getServiceNamed("web")
    player = top.getServiceNamed("player")
    assert isinstance(web, Listener) and isinstance(player, Listener)
    assert isinstance(web.factory, Site)
    play = web.factory.resource.children[b"play"]
    assert play._players.factory is player.factory


def test_web_off_opens_no_web_port() -> None:
    """--web off leaves the web listener out."""
    top = makeService(parse("--web", "off"), reactor=Clock())
    assert [s.name for s in top if isinstance(s, Listener)] == ["player", "admin"]


def test_daemon_logs_the_page_url_and_serves_it() -> None:
    """twistd -n guessgame logs the page's URL, and that URL serves the page and the API."""
    with Daemon("--db", ":memory:") as daemon:
        port = daemon.ports["web"]
        url = f"http://127.0.0.1:{port}/"
        assert any(f"the game page is at {url}" in line for line in daemon.log)
        with urllib.request.urlopen(url, timeout=10) as page:
            assert page.status == 200
            assert b'id="transcript"' in page.read()
        with urllib.request.urlopen(url + "api/stats", timeout=10) as stats:
            assert json.load(stats)["range"] == "1-30"


def test_daemon_with_web_off_has_no_web_port() -> None:
    """With --web off the daemon opens only the player and admin ports."""
    with Daemon("--db", ":memory:", "--web", "off") as daemon:
        assert set(daemon.ports) == {"player", "admin"}
        assert not any("web port" in line for line in daemon.log)


@pytest.mark.filterwarnings("ignore:Passing pyOpenSSL (X509|PKey) objects is deprecated")
def test_daemon_serves_the_page_over_tls(tmp_path: Path) -> None:
    """--web ssl:... serves HTTPS, and the start-up log names an https:// URL."""
    pki = make_pki(tmp_path)
    key, cert = pki.server.key, pki.server.cert
    web = f"ssl:0:interface=127.0.0.1:privateKey={key}:certKey={cert}"
    with Daemon("--db", ":memory:", "--web", web) as daemon:
        port = daemon.ports["web"]
        assert any(f"the game page is at https://127.0.0.1:{port}/" in line for line in daemon.log)
        context = ssl.create_default_context(cafile=str(pki.ca))
        url = f"https://localhost:{port}/api/stats"
        with urllib.request.urlopen(url, timeout=10, context=context) as stats:
            assert stats.headers["X-Content-Type-Options"] == "nosniff"
            assert json.load(stats)["mode"] == "shared"
