"""The traceback module, loaded when first used rather than with logging.

logging imports traceback (and with it linecache, tokenize, token and
textwrap) at its top, for the messages that print an exception or a stack:
0.35 MiB of RSS in every guest for a message the daemon may never write
(bench/bench_daemon.py).  ``install()``, called before logging is imported,
puts a stand-in module under the name; the first attribute anyone takes from
it imports the real module, which then replaces it everywhere: in
sys.modules and in the stand-in itself, for the modules (logging) that keep
a reference to it.

(importlib.util.LazyLoader does not do here: the import statement looks at a
module's __spec__, which makes LazyLoader load it at once, and importlib.util
is 0.12 MiB itself.)
"""
from __future__ import annotations

import sys


def install() -> bool:
    """Put the stand-in in place, unless traceback or logging is loaded
    already (then nothing changes).  True if it did."""
    if "traceback" in sys.modules or "logging" in sys.modules:
        return False
    stand_in = type(sys)("traceback", "Loaded on first use (xenballoond.lazytraceback).")

    def __getattr__(name: str) -> object:
        return getattr(_load(stand_in), name)

    setattr(stand_in, "__getattr__", __getattr__)  # PEP 562: a module's missing attributes
    sys.modules["traceback"] = stand_in
    return True


def _load(stand_in: object) -> object:
    if sys.modules.get("traceback") is stand_in:
        del sys.modules["traceback"]
    import traceback
    namespace = vars(stand_in)
    namespace.pop("__getattr__", None)
    namespace.update(vars(traceback))
    return traceback
