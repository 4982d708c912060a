"""What a telnet-command flood takes from the other players: CPU and latency.

Starts ``twistd -n guessgame`` on a free loopback port (its defaults,
``--db :memory:``), then measures one ordinary player's reply latency
(``help``, one line at a time) first alone, then while ``--flooders``
processes send telnet commands as fast as the daemon takes them.  Each
flooder reconnects whenever the daemon closes it.  Two kinds of flood:

- ``noline``: ``IAC NOP`` repeated, no line end ever;
- ``lines``: ``IAC NOP`` repeated with an LF every 500 bytes, so that each
  line stays within ``--max-line``;
- ``options``: ``IAC DO 1`` (each one owed an answer) with an LF every 498
  bytes.

It reports the victim's median and 90th-percentile latency, the daemon's
CPU seconds during each phase, the MB of flood the flooders' kernel took
(an upper bound on what the daemon read: after a close the rest is reset),
and the daemon's CPU seconds per MB of it.  ``--source DIR`` runs the daemon from another
copy of the ``guessgame`` package (say, an export of an older commit), so
that two versions can be measured side by side::

    git archive main guessgame | tar -x -C /tmp/before
    python -m bench.flood --source /tmp/before
    python -m bench.flood

Everything started is killed at the end, also on errors and Ctrl-C.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import socket
import statistics
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.run import CLK_TCK, Processes, _twistd, _wait_listening, parse_proc_stat

__all__ = ["flood_payload", "main"]

NOP = b"\xff\xf1"


def flood_payload(kind: str, size: int = 65536) -> bytes:
    """``size`` bytes of telnet commands of the given ``kind`` (see the module docstring)."""
    if kind == "noline":
        return NOP * (size // 2)
    line = b"\xff\xfd\x01" * 166 + b"\n" if kind == "options" else NOP * 250 + b"\n"
    return line * (size // len(line))


def _cpu_ticks(pid: int) -> int:
    return parse_proc_stat(Path(f"/proc/{pid}/stat").read_text())


def _flooder(port: int, kind: str, stop_at: float, sent: Any) -> None:
    """Send the flood until ``stop_at`` (monotonic), reconnecting after each close."""
    payload = flood_payload(kind)
    total = 0
    while time.monotonic() < stop_at:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1.0) as sock:
                sock.settimeout(0.5)
                while time.monotonic() < stop_at:
                    total += sock.send(payload)
                    try:  # drain replies so the output cap does not stop us
                        sock.setblocking(False)
                        while sock.recv(65536):
                            pass
                    except BlockingIOError:
                        pass
                    finally:
                        sock.settimeout(0.5)
        except OSError:
            continue
    with sent.get_lock():
        sent.value += total


def _latencies(port: int, seconds: float) -> list[float]:
    """Reply times of one player sending ``help`` line by line for ``seconds``."""
    times: list[float] = []
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        reader = sock.makefile("rb")
        reader.readline()
        reader.readline()
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            start = time.perf_counter()
            sock.sendall(b"help\n")
            reader.readline()
            times.append(time.perf_counter() - start)
            time.sleep(0.005)
    return times


def _phase(pid: int, port: int, seconds: float, flooders: int, kind: str) -> dict[str, float]:
    sent = multiprocessing.Value("q", 0)
    stop_at = time.monotonic() + seconds + 0.5
    workers = [
        multiprocessing.Process(target=_flooder, args=(port, kind, stop_at, sent))
        for _ in range(flooders)
    ]
    for worker in workers:
        worker.start()
    try:
        time.sleep(0.3 if flooders else 0)
        ticks = _cpu_ticks(pid)
        times = _latencies(port, seconds)
        cpu = (_cpu_ticks(pid) - ticks) / CLK_TCK
    finally:
        for worker in workers:
            worker.join(seconds + 10)
            if worker.is_alive():
                worker.kill()
    mb = sent.value / 1e6
    return {
        "median_ms": statistics.median(times) * 1000,
        "p90_ms": statistics.quantiles(times, n=10)[-1] * 1000,
        "replies": len(times),
        "cpu_s": cpu,
        "sent_mb": mb,
        "cpu_s_per_mb": cpu / mb if mb else 0.0,
    }


def main(argv: Sequence[str] | None = None) -> None:
    """Run the baseline and the flood phases and print one line each."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", help="run the daemon's guessgame package from this directory")
    parser.add_argument("--flooders", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--kind", choices=["noline", "lines", "options", "all"], default="all")
    ns = parser.parse_args(argv)
    env = dict(os.environ)
    if ns.source:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [ns.source, env.get("PYTHONPATH")]))
    kinds = ["noline", "lines", "options"] if ns.kind == "all" else [ns.kind]
    procs = Processes()
    with tempfile.TemporaryDirectory(prefix="guessgame-flood-") as tmp:
        log = Path(tmp) / "daemon.log"
        try:
            with log.open("wb") as out:
                daemon = procs.start(
                    [*_twistd(), "-n", "--pidfile=", "guessgame", "--db", ":memory:",
                     "--player", "tcp:0:interface=127.0.0.1",
                     "--admin", "tcp:0:interface=127.0.0.1"],
                    stdout=out, stderr=subprocess.STDOUT, cwd=tmp, env=env,
                )  # fmt: skip
            port = _wait_listening(daemon, log)
            label = ns.source or "this tree"
            for kind, flooders in [("none", 0)] + [(k, ns.flooders) for k in kinds]:
                result = _phase(daemon.pid, port, ns.seconds, flooders, kind)
                print(
                    f"{label}: flood={kind} flooders={flooders} "
                    f"median={result['median_ms']:.2f}ms p90={result['p90_ms']:.2f}ms "
                    f"replies={result['replies']} daemon_cpu={result['cpu_s']:.2f}s "
                    f"sent={result['sent_mb']:.1f}MB "
                    f"cpu_per_MB={result['cpu_s_per_mb']:.3f}s",
                    flush=True,
                )
        finally:
            procs.stop_all()


if __name__ == "__main__":
    main()
