"""The one seam for every subprocess: argument lists, never a shell, a timeout,
LC_ALL=C, close_fds, and stderr kept for the error message."""
from __future__ import annotations

import os
import subprocess
from .record import frozen

TYPE_CHECKING = False  # typing.TYPE_CHECKING; importing typing: +0.2-0.6 MiB in every guest
if TYPE_CHECKING:
    from typing import Callable, Mapping, Sequence


class CommandError(Exception):
    """A command could not be run, timed out, or exited non-zero."""

    def __init__(self, argv: Sequence[str], returncode: int | None, stderr: str) -> None:
        self.argv = list(argv)
        self.returncode = returncode
        self.stderr = stderr
        what = "timed out" if returncode is None else f"exited {returncode}"
        detail = f": {stderr.strip()}" if stderr.strip() else ""
        super().__init__(f"{argv[0]} {what}{detail}")


@frozen
class Result:
    returncode: int
    stdout: str
    stderr: str


def which(name: str, path_env: str | None = None) -> str | None:
    """shutil.which() without importing shutil (RSS): the first executable
    ``name`` on ``path_env`` (default $PATH)."""
    for directory in (path_env if path_env is not None else os.environ.get("PATH", "")).split(os.pathsep):
        candidate = os.path.join(directory or ".", name)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


def run(argv: Sequence[str], timeout_s: float, input_text: str | None = None,
        env: Mapping[str, str] | None = None, check: bool = True,
        on_timeout: Callable[[subprocess.Popen[str]], None] | None = None) -> Result:
    """Run ``argv`` and return its output; raise CommandError on failure or timeout.
    A command that times out is killed, unless ``on_timeout`` is given: then it is
    left to finish, its pipes closed, and handed to on_timeout (to be reaped)."""
    full_env = dict(os.environ if env is None else env)
    full_env["LC_ALL"] = "C"
    if on_timeout is not None:
        return _run_unkilled(argv, timeout_s, input_text, full_env, check, on_timeout)
    try:
        proc = subprocess.run(list(argv), input=input_text, capture_output=True, text=True,
                              timeout=timeout_s, env=full_env, close_fds=True,
                              errors="surrogateescape")
    except subprocess.TimeoutExpired as exc:
        raise CommandError(argv, None, "") from exc
    except OSError as exc:
        raise CommandError(argv, 127, str(exc)) from exc
    if check and proc.returncode != 0:
        raise CommandError(argv, proc.returncode, proc.stderr)
    return Result(proc.returncode, proc.stdout, proc.stderr)


def _run_unkilled(argv: Sequence[str], timeout_s: float, input_text: str | None,
                  full_env: dict[str, str], check: bool,
                  on_timeout: Callable[[subprocess.Popen[str]], None]) -> Result:
    try:
        child = subprocess.Popen(list(argv), stdin=None if input_text is None else subprocess.PIPE,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                 env=full_env, close_fds=True, errors="surrogateescape")
    except OSError as exc:
        raise CommandError(argv, 127, str(exc)) from exc
    try:
        out, err = child.communicate(input_text, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        for pipe in (child.stdin, child.stdout, child.stderr):
            if pipe is not None:
                pipe.close()
        on_timeout(child)
        raise CommandError(argv, None, "") from None
    if check and child.returncode != 0:
        raise CommandError(argv, child.returncode, err)
    return Result(child.returncode, out, err)
