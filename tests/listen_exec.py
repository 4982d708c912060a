"""Run a command the way systemd starts a socket-activated service.

``python tests/listen_exec.py FD [FD ...] -- COMMAND ...`` puts the given
inherited file descriptors at 3, 4, ... and sets ``LISTEN_FDS`` and
``LISTEN_PID`` (this process's pid, which ``exec`` keeps) before it
replaces itself with COMMAND.  ``LISTEN_FDNAMES`` comes from the caller.
"""

from __future__ import annotations

import fcntl
import os
import sys

FIRST = 3


def main(argv: list[str]) -> None:
    """Move the descriptors into place, then exec the command."""
    split = argv.index("--")
    fds = [int(fd) for fd in argv[:split]]
    command = argv[split + 1 :]
    # Out of the way first, so that moving one never overwrites another.
    high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 100) for fd in fds]
    for fd in fds:
        os.close(fd)
    for offset, fd in enumerate(high):
        os.dup2(fd, FIRST + offset)
        os.close(fd)
    os.environ["LISTEN_FDS"] = str(len(fds))
    os.environ["LISTEN_PID"] = str(os.getpid())
    os.execv(command[0], command)


if __name__ == "__main__":
    main(sys.argv[1:])
