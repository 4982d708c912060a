"""Fixtures for every test: fail a test that logged an unhandled error."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from twisted.logger import globalLogPublisher


@pytest.fixture(autouse=True)
def in_tmp_path(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run every test in its own folder, so that a default --db never lands in the tree."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture(autouse=True)
def observe_errors() -> Iterator[list[Any]]:
    """Fail the test if anything logged a failure (an unhandled error)."""
    failures: list[Any] = []

    def observer(event: dict[str, Any]) -> None:
        if event.get("log_failure") is not None or event.get("isError"):
            failures.append(event)

    globalLogPublisher.addObserver(observer)
    yield failures
    globalLogPublisher.removeObserver(observer)
    if failures:
        from twisted.logger import formatEvent

        texts = [formatEvent(e) + "\n" + str(e.get("log_failure", "")) for e in failures]
        pytest.fail("errors were logged:\n" + "\n".join(texts))


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[Any]:
    """One PostgreSQL server for the whole run, started on first use (else a skip)."""
    from tests.pg import PostgresServer, unavailable

    why = unavailable()
    if why is not None:
        pytest.skip(why)
    try:
        server = PostgresServer()
    except (RuntimeError, OSError) as e:
        pytest.skip(f"cannot start a PostgreSQL server here: {e}")
    yield server
    server.destroy()


@pytest.fixture
def pg_uri(postgres_server: Any) -> str:
    """The URI of a new, empty database on the test server."""
    uri: str = postgres_server.new_database()
    return uri
