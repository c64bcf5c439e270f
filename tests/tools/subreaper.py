#!/usr/bin/env python3
"""Run a command as a child subreaper: every orphaned descendant is re-parented to us and reaped.

Why: where PID 1 does not reap orphans (seen on CI's and this machine's init), a postmaster
killed with SIGKILL stays a zombie. `kill -0` still succeeds on it, so the crash test waited
forever, and PostgreSQL refuses to start while postmaster.pid names a live-looking PID.
Under this wrapper the postmaster (orphaned once pg_ctl exits) and its backends are reaped
as soon as they die.

    usage: subreaper.py COMMAND [ARGS...]     exits with COMMAND's status
"""
import ctypes
import os
import signal
import sys

PR_SET_CHILD_SUBREAPER = 36


def main() -> int:
    if len(sys.argv) < 2:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        print("subreaper.py: prctl(PR_SET_CHILD_SUBREAPER) failed; running without", file=sys.stderr)
    child = os.fork()
    if child == 0:
        os.execvp(sys.argv[1], sys.argv[1:])
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda s, _f: os.kill(child, s))
    while True:
        try:
            pid, status = os.waitpid(-1, 0)
        except ChildProcessError:
            return 1
        except InterruptedError:
            continue
        if pid == child:
            return os.waitstatus_to_exitcode(status) if hasattr(os, "waitstatus_to_exitcode") else status >> 8


if __name__ == "__main__":
    rc = main()
    sys.exit(rc if rc >= 0 else 128 - rc)
