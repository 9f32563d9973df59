"""The xenstore shim: shells out to the ``xenstore-*`` clients on PATH.

The original called one process per key and per check (up to 25 a tick).  Here a
tick costs two: ``xenstore-ls -f memory`` learns which keys exist and their values
at once, and one ``xenstore-write`` writes every output in a single transaction.

Batch reads (dom0's monitor and balancer) are one ``xenstore-list -p`` or
``xenstore-read -p`` process with many paths.  Those tools stop at the first
missing path, printing what they had: read_upto/list_upto return the paths
after it untried, read_existing/list_existing run again for them.

The clients cannot watch: watch() sets nothing, fileno() is None, events() [].

A client that times out is never killed: it is left to finish and reaped by a
later call.  Killed inside its transaction (xenstore-write of several keys,
xenstore-read of several paths), it would leave the guest's kernel to end that
transaction, which Linux 6.1 counts wrongly (xs_request_exit: one xenstore user
too few), and every later xl save or migration of the guest would wait in
xs_suspend() for good.  At most UNFINISHED_MAX such clients run at once; beyond
that a call fails at once, spawning nothing.
"""
from __future__ import annotations

import builtins  # the type, where a method named list hides it
import re
import subprocess

TYPE_CHECKING = False  # typing.TYPE_CHECKING; importing typing: +0.2-0.6 MiB in every guest
if TYPE_CHECKING:
    from typing import Mapping, Sequence

from .. import proc
from . import wire
from . import (XenstoreError, XenstoreNotFound, XenstoreUnavailable, XenstoreWriteFailed,
               escape, unescape)

TOOLS = ("xenstore-ls", "xenstore-list", "xenstore-read", "xenstore-write", "xenstore-exists")
UNFINISHED_MAX = 4  # clients that timed out and still run (see above)
# Bytes of arguments per batch process: well under Linux's ARG_MAX (2 MiB with
# the usual 8 MiB stack), so 1000 guests still take one process per step.
ARGV_BUDGET_BYTES = 512 * 1024
# compiled on first use (re's cache): a guest never runs a batch
_FAILED = {
    "xenstore-list": r"could not list path (/\S*)\s*$",
    "xenstore-read": r"couldn't read path (/\S*)\s*$",
}


def error_for(tool: str, res: proc.Result) -> XenstoreError:
    """What a client's failure stands for, from its exit status and stderr
    (the clients print "could not write path", "couldn't read path ...",
    "xs_directory (p): No such file or directory", or xs_open's error)."""
    err = res.stderr.strip()[:300] or f"{tool} exited {res.returncode}"
    if "xs_open" in err or "transaction" in err or res.returncode == 127:
        return XenstoreUnavailable(err)
    if tool == "xenstore-write":
        return XenstoreWriteFailed(err)
    if ("No such file" in err or "Permission denied" in err
            or "couldn't read" in err or "could not list" in err):
        return XenstoreNotFound(err)
    return XenstoreError(err)


class CliXenstore:
    backend = "cli"

    def __init__(self, timeout_s: float = 2.0, env: Mapping[str, str] | None = None,
                 path_env: str | None = None,
                 argv_budget_bytes: int = ARGV_BUDGET_BYTES) -> None:
        self.timeout_s = timeout_s
        self.argv_budget_bytes = argv_budget_bytes
        self.env = env
        self._path_env = path_env if path_env is not None else (env or {}).get("PATH")
        self.processes_spawned = 0
        self.requests = 0
        self._exe: dict[str, str | None] = {}
        self._unfinished: builtins.list[subprocess.Popen[str]] = []

    def _tool(self, name: str) -> str:
        if name not in self._exe:
            self._exe[name] = proc.which(name, self._path_env)
        exe = self._exe[name]
        if exe is None:
            raise XenstoreUnavailable(f"{name} not found on PATH")
        return exe

    def available(self) -> bool:
        return all(proc.which(t, self._path_env) for t in TOOLS)

    def run_tool(self, tool: str, args: list[str], requests: int = 1) -> proc.Result:
        """Run one client; its exit status is the caller's to judge (see
        error_for).  Raise XenstoreUnavailable if it cannot run or times out."""
        argv = [self._tool(tool), *args]
        if self.unfinished() >= UNFINISHED_MAX:
            raise XenstoreUnavailable(f"{tool} not run: {UNFINISHED_MAX} xenstore clients that "
                                      f"timed out are still running")
        self.processes_spawned += 1
        self.requests += requests
        try:
            return proc.run(argv, self.timeout_s, env=self.env, check=False,
                            on_timeout=self._unfinished.append)
        except proc.CommandError as exc:
            what = (f"timed out after {self.timeout_s}s (left to finish)"
                    if exc.returncode is None else str(exc))
            raise XenstoreUnavailable(f"{tool} {what}") from exc

    def unfinished(self) -> int:
        """How many clients that timed out still run (those that ended are reaped)."""
        self._unfinished = [c for c in self._unfinished if c.poll() is None]
        return len(self._unfinished)

    def _run(self, tool: str, args: list[str]) -> str:
        res = self.run_tool(tool, args)
        if res.returncode != 0:
            raise error_for(tool, res)
        return res.stdout

    def snapshot(self, path: str) -> dict[str, str]:
        try:
            out = self._run("xenstore-ls", ["-f", "--", path])
        except XenstoreNotFound:
            return {}
        prefix = path.rstrip("/") + "/"
        nodes: dict[str, str] = {}
        for line in out.splitlines():
            # "path = "value"" (value sanitised, so one line) or "path:" (unreadable)
            key, sep, rest = line.partition(' = "')
            if not sep or not rest.endswith('"'):
                continue
            if key.startswith(prefix):
                key = key[len(prefix):]
            nodes[key] = unescape(rest[:-1])
        return nodes

    def list(self, path: str) -> list[str]:
        return self._run("xenstore-list", ["--", path]).splitlines()

    def read(self, path: str) -> str:
        return unescape(self._run("xenstore-read", ["--", path]).rstrip("\n"))

    def write_many(self, items: Mapping[str, str]) -> None:
        if not items:
            return
        args: builtins.list[str] = ["--"]  # getopt would take a value such as "-1" for an option
        for key, value in items.items():
            if "\0" in value or "\0" in key:
                raise XenstoreWriteFailed(f"NUL byte in {key!r}")
            try:  # argv is bytes: a lone surrogate has no encoding
                wire.to_bytes(key)
                wire.to_bytes(value)
            except wire.WireError:
                raise XenstoreWriteFailed(f"unencodable character in {key!r}") from None
            args += [key, escape(value)]
        self._run("xenstore-write", args)

    # --- batches -----------------------------------------------------------

    def _run_upto(self, tool: str, paths: builtins.list[str]) -> tuple[str, str | None]:
        """stdout, and the path the tool stopped at (None: it did them all)."""
        res = self.run_tool(tool, ["-p", *paths], requests=len(paths))
        if res.returncode == 0:
            return res.stdout, None
        lines = res.stderr.strip().splitlines()
        m = re.search(_FAILED[tool], lines[-1]) if lines else None
        if m is None or m.group(1) not in paths:
            raise error_for(tool, res)
        return res.stdout, m.group(1)

    def _passes(self, tool: str, paths: Sequence[str], optimistic: bool
                ) -> tuple[builtins.list[tuple[builtins.list[str], str]], builtins.list[str]]:
        """Run ``tool`` over ``paths``: (paths done, output) per process, and the
        paths not tried.  A path the tool stopped at (missing) is dropped; the
        rest run again, unless ``optimistic``: then they are returned untried."""
        done: builtins.list[tuple[builtins.list[str], str]] = []
        chunks = _chunks(list(dict.fromkeys(paths)), self.argv_budget_bytes)
        for n, chunk in enumerate(chunks):
            todo = chunk
            while todo:
                out, stopped = self._run_upto(tool, todo)
                if stopped is None:
                    done.append((todo, out))
                    break
                at = todo.index(stopped)
                done.append((todo[:at], out))
                todo = todo[at + 1:]
                if optimistic:
                    return done, todo + [p for c in chunks[n + 1:] for p in c]
        return done, []

    def _list_batch(self, paths: Sequence[str], optimistic: bool
                    ) -> tuple[dict[str, builtins.list[str]], builtins.list[str]]:
        found: dict[str, builtins.list[str]] = {}
        passes, untried = self._passes("xenstore-list", paths, optimistic)
        for ok_paths, out in passes:
            wanted = set(ok_paths)
            for p in ok_paths:
                found[p] = []
            for line in out.split("\n"):
                parent, sep, child = line.rpartition("/")
                if sep and parent in wanted and child:
                    found[parent].append(child)
        return found, untried

    def _read_batch(self, paths: Sequence[str], optimistic: bool
                    ) -> tuple[dict[str, str], builtins.list[str]]:
        found: dict[str, str] = {}
        passes, untried = self._passes("xenstore-read", paths, optimistic)
        for ok_paths, out in passes:
            wanted = set(ok_paths)
            for line in out.split("\n"):
                # "<path>: <value>"; values are escaped (one line), paths have no ": "
                path, sep, value = line.partition(": ")
                if sep and path in wanted and path not in found:
                    found[path] = _unescape(value)
        return found, untried

    def list_existing(self, paths: Sequence[str]) -> dict[str, builtins.list[str]]:
        return self._list_batch(paths, False)[0]

    def read_existing(self, paths: Sequence[str]) -> dict[str, str]:
        return self._read_batch(paths, False)[0]

    def list_upto(self, paths: Sequence[str]
                  ) -> tuple[dict[str, builtins.list[str]], builtins.list[str]]:
        return self._list_batch(paths, True)

    def read_upto(self, paths: Sequence[str]) -> tuple[dict[str, str], builtins.list[str]]:
        return self._read_batch(paths, True)

    # --- watches: the clients have none -------------------------------------

    def watch(self, path: str, token: str) -> None:
        pass

    def fileno(self) -> int | None:
        return None

    def events(self) -> builtins.list[tuple[str, str]]:
        return []

    def close(self) -> None:
        pass


def _chunks(paths: Sequence[str], budget: int) -> list[list[str]]:
    chunks: list[list[str]] = [[]]
    used = 0
    for path in paths:
        size = len(path) + 1
        if chunks[-1] and used + size > budget:
            chunks.append([])
            used = 0
        chunks[-1].append(path)
        used += size
    return [c for c in chunks if c]


def _unescape(value: str) -> str:
    """unescape(), with a fast path for the usual case (a text whose only
    escapes are newlines): ~80,000 escapes a refresh at 1000 guests."""
    if "\\" not in value:
        return value
    if "\\" not in value.replace("\\n", ""):  # every backslash starts a "\n"
        return value.replace("\\n", "\n")
    return unescape(value)
