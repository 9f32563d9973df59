"""Replacing a small file in one step, so a reader (the init script, an admin,
node_exporter's textfile collector) sees the old text or the new, never half."""
from __future__ import annotations

import os


def replace_file(path: str, text: str, *, fsync: bool = False, mode: int = 0o644,
                 make_dirs: bool = False) -> None:
    """Write ``text`` to a temporary file beside ``path`` (a dot name ending in
    .tmp, which collectors' globs skip; O_NOFOLLOW: no symlink planted there is
    followed), then rename it over ``path``; removed again on any failure."""
    directory = os.path.dirname(os.path.abspath(path))
    if make_dirs:
        os.makedirs(directory, exist_ok=True)
    tmp = os.path.join(directory, f".{os.path.basename(path)}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC,
                     mode)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.chmod(tmp, mode)  # whatever the umask
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
