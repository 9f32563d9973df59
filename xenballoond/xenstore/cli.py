"""The xenstore shim: shells out to the ``xenstore-*`` clients on PATH.

The original called one process per key and per check (up to 25 a tick).  Here a
tick costs two: ``xenstore-ls -f memory`` learns which keys exist and their values
at once, and one ``xenstore-write`` writes every output in a single transaction.
"""
from __future__ import annotations


TYPE_CHECKING = False  # typing.TYPE_CHECKING; importing typing: +0.2-0.6 MiB in every guest
if TYPE_CHECKING:
    from typing import Mapping

from .. import proc
from . import wire
from . import (XenstoreError, XenstoreNotFound, XenstoreUnavailable, XenstoreWriteFailed,
               escape, unescape)

TOOLS = ("xenstore-ls", "xenstore-list", "xenstore-read", "xenstore-write", "xenstore-exists")


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
    def __init__(self, timeout_s: float = 2.0, env: Mapping[str, str] | None = None,
                 path_env: str | None = None) -> None:
        self.timeout_s = timeout_s
        self.env = env
        self._path_env = path_env if path_env is not None else (env or {}).get("PATH")
        self.processes_spawned = 0
        self.requests = 0
        self._exe: dict[str, str | None] = {}

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
        self.processes_spawned += 1
        self.requests += requests
        try:
            return proc.run(argv, self.timeout_s, env=self.env, check=False)
        except proc.CommandError as exc:
            what = f"timed out after {self.timeout_s}s" if exc.returncode is None else str(exc)
            raise XenstoreUnavailable(f"{tool} {what}") from exc

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
        args: list[str] = ["--"]  # getopt would take a value such as "-1" for an option
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

    def close(self) -> None:
        pass
