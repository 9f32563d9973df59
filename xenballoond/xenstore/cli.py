"""The xenstore shim: shells out to the ``xenstore-*`` clients on PATH.

The original called one process per key and per check (up to 25 a tick).  Here a
tick costs two: ``xenstore-ls -f memory`` learns which keys exist and their values
at once, and one ``xenstore-write`` writes every output in a single transaction.
"""
from __future__ import annotations


TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (RSS)
if TYPE_CHECKING:
    from typing import Mapping

from .. import proc
from . import (XenstoreError, XenstoreNotFound, XenstoreUnavailable,
                       XenstoreWriteFailed, escape, unescape)

TOOLS = ("xenstore-ls", "xenstore-list", "xenstore-read", "xenstore-write", "xenstore-exists")


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

    def _run(self, tool: str, args: list[str]) -> str:
        argv = [self._tool(tool), *args]
        self.processes_spawned += 1
        self.requests += 1
        try:
            return proc.run(argv, self.timeout_s, env=self.env).stdout
        except proc.CommandError as exc:
            err = exc.stderr
            if exc.returncode is None:
                raise XenstoreUnavailable(f"{tool} timed out after {self.timeout_s}s") from exc
            if "xs_open" in err or "transaction" in err or exc.returncode == 127:
                raise XenstoreUnavailable(err.strip() or str(exc)) from exc
            if tool == "xenstore-write":
                raise XenstoreWriteFailed(err.strip() or str(exc)) from exc
            if ("No such file" in err or "Permission denied" in err  # xenstore-ls: xs_directory (p): ...
                    or "couldn't read" in err or "could not list" in err):
                raise XenstoreNotFound(err.strip()) from exc
            raise XenstoreError(err.strip() or str(exc)) from exc

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
                key.encode("utf-8", "surrogateescape")
                value.encode("utf-8", "surrogateescape")
            except UnicodeEncodeError:
                raise XenstoreWriteFailed(f"unencodable character in {key!r}") from None
            args += [key, escape(value)]
        self._run("xenstore-write", args)

    def close(self) -> None:
        pass
