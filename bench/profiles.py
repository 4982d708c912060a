"""Where the daemon's extra CPU over the ceiling goes, from two ``--profile`` stacks.

``python -m bench.run --fixed-load --profile`` keeps py-spy's raw stacks of
each server as ``bench/profile-ROW.txt`` and prints each row's CPU time per
guess.  This turns two such profiles into microseconds per guess, function
by function: a function's share of the busy samples times the row's CPU
per guess.  The self time of each function, daemon beside ceiling, sorted
by what the daemon spends more; then the time under a few frames of the
line path (inclusive).  Samples of threads waiting on a condition are left
out, as in `bench.run.summarise_profile`.

Run: ``python -m bench.profiles CEILING.txt US DAEMON.txt US``.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field

from bench.run import WAITING_FRAMES

__all__ = ["Profile", "compare", "main", "read_profile"]

#: Frames whose inclusive time is shown: the way of one line and its reply.
LINE_PATH = (
    "Connection._dataReceived (twisted/internet/tcp.py)",
    "FileDescriptor.write (twisted/internet/abstract.py)",
    "FileDescriptor.doWrite (twisted/internet/abstract.py)",
)


@dataclass
class Profile:
    """Busy samples of one server: in total, per innermost frame, per frame anywhere."""

    total: int = 0
    own: dict[str, int] = field(default_factory=dict)
    inclusive: dict[str, int] = field(default_factory=dict)


def _frame(text: str) -> str:
    """``function (path:line)`` as ``function (path)``, the path from its package on."""
    text = re.sub(r":\d+\)$", ")", text)
    return re.sub(r"\(/\S*/(?:site-packages|lib/python3\.\d+)/", "(", text)


def read_profile(collapsed: str) -> Profile:
    """Count py-spy's raw stacks (``frame;frame;... COUNT`` a line), waits left out."""
    profile = Profile()
    for line in collapsed.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        frames = [_frame(f) for f in stack.split(";")]
        if frames[-1] in WAITING_FRAMES:
            continue
        count = int(count_text)
        profile.total += count
        profile.own[frames[-1]] = profile.own.get(frames[-1], 0) + count
        for frame in set(frames):
            profile.inclusive[frame] = profile.inclusive.get(frame, 0) + count
    return profile


def compare(
    ceiling: Profile, ceiling_us: float, daemon: Profile, daemon_us: float
) -> list[tuple[float, float, str]]:
    """Self time per function in us per guess, (daemon, ceiling, name), most extra first."""
    if not ceiling.total or not daemon.total:
        return []
    rows = [
        (
            round(daemon.own.get(name, 0) / daemon.total * daemon_us, 2),
            round(ceiling.own.get(name, 0) / ceiling.total * ceiling_us, 2),
            name,
        )
        for name in ceiling.own.keys() | daemon.own.keys()
    ]
    rows.sort(key=lambda row: (row[1] - row[0], row[2]))
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    """Print the comparison of two profiles."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.profiles", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("ceiling", help="the ceiling's profile-*.txt")
    parser.add_argument("ceiling_us", type=float, help="its CPU us/guess")
    parser.add_argument("daemon", help="the daemon's profile-*.txt")
    parser.add_argument("daemon_us", type=float, help="its CPU us/guess")
    parser.add_argument("--top", type=int, default=25, help="functions to show")
    ns = parser.parse_args(argv)
    with open(ns.ceiling, encoding="utf-8", errors="replace") as f:
        ceiling = read_profile(f.read())
    with open(ns.daemon, encoding="utf-8", errors="replace") as f:
        daemon = read_profile(f.read())
    extra = ns.daemon_us - ns.ceiling_us
    print(f"busy samples: ceiling {ceiling.total}, daemon {daemon.total}")
    print(f"CPU us/guess: ceiling {ns.ceiling_us}, daemon {ns.daemon_us}, extra {extra:.2f}")
    print(f"\n{'daemon':>7} {'ceiling':>7} {'extra':>6} {'% extra':>7}  self time, us/guess")
    for mine, theirs, name in compare(ceiling, ns.ceiling_us, daemon, ns.daemon_us)[: ns.top]:
        share = f"{100 * (mine - theirs) / extra:7.1f}" if extra else "      -"
        print(f"{mine:7.2f} {theirs:7.2f} {mine - theirs:6.2f} {share}  {name}")
    print(f"\n{'daemon':>7} {'ceiling':>7}  inclusive, us/guess")
    for name in LINE_PATH:
        mine = daemon.inclusive.get(name, 0) / max(daemon.total, 1) * ns.daemon_us
        theirs = ceiling.inclusive.get(name, 0) / max(ceiling.total, 1) * ns.ceiling_us
        print(f"{mine:7.2f} {theirs:7.2f}  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
