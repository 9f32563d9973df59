"""xenballoon.conf (and every program's conf): parse the shell-style file
without executing it.

The original daemon sourced /etc/sysconfig/xenballoon.conf with ``.``, so the
file could run anything as root.  We read it as data: ``KEY=value`` lines,
optional ``export``, single/double quotes, comments and blank lines.  Anything
whose shell meaning we cannot reproduce safely (``$`` expansion, backticks,
backslashes, several words on a line, lines that are not assignments) is a
ConfigError naming the file, line, variable and value, never a silent default.

The lexer and the typed conversion are shared; each program brings its own
table of ``Spec`` entries (the guest daemon's is ``SPECS`` below, the
balancer's is in dom0/settings.py) and its own frozen record, which validates
itself with ``check_fields``.  ``parse_values`` is pure (text and a table in,
typed values out); ``parse_config`` is it for xenballoon.conf;
``read_config_text``, ``load_config`` and ``find_config`` are the thin I/O edges.
"""
from __future__ import annotations

import os
import re
from xenballoond.record import fields, frozen

TYPE_CHECKING = False  # typing.TYPE_CHECKING; importing typing: +0.2-0.6 MiB in every guest
if TYPE_CHECKING:
    from typing import Dict, List, Optional, Tuple

from xenballoond.minimum import MIN_POLICIES, MIN_POLICY_2008
from xenballoond.paths import CONFIG_CANDIDATES, Root

# Sane upper bounds, so a typo can't overflow anything downstream.
MAX_INTERVAL_S = 86400
MAX_HYSTERESIS = 1_000_000
MAX_MIN_MEM_MB = 16 * 1024 * 1024          # 16 TiB in MB
MAX_PATH_CHARS = 4096                      # PATH_MAX
MAX_LINE_CHARS = 65536                     # room for a quoted PATH_MAX path
MAX_FILE_BYTES = 1024 * 1024
MAX_PUBLISH_THRESHOLD_MB = 1024 * 1024     # 1 TiB: more is "never on change"
# How often an idle guest publishes its stats at the least (XENBALLOON_PUBLISH_MAX_S);
# dom0's balancer allows a guest this long between uptimes before it calls it stale.
DEFAULT_PUBLISH_MAX_S = 10
# More digits than any bound above has: checked before int() so a megabyte of
# digits costs nothing (and never hits Python's int-string limit).
_MAX_INT_DIGITS = 12

XENSTORE_BACKENDS = ("auto", "cli", "native")  # xenstore/choose.py
MAX_WORDS = 4096
MAX_WORD_CHARS = 64
_WORD = re.compile(r"[A-Za-z0-9_.-]{1,%d}" % MAX_WORD_CHARS, re.ASCII)
_TRUE_WORDS = ("true", "yes", "on", "1")
_FALSE_WORDS = ("false", "no", "off", "0")


class ConfigError(Exception):
    """A config file that cannot be used.  ``line``, ``key`` and ``value`` are
    None when they do not apply (e.g. an unreadable file)."""

    def __init__(self, file: str, line: Optional[int], key: Optional[str],
                 value: Optional[str], reason: str) -> None:
        self.file = file
        self.line = line
        self.key = key
        self.value = value
        self.reason = reason
        where = file if line is None else f"{file}:{line}"
        if key is not None and value is not None:
            what = f"{key}={_quote_for_message(value)}: "
        elif key is not None:
            what = f"{key}: "
        else:
            what = ""
        super().__init__(f"{where}: {what}{reason}")


@frozen
class Config:
    """The daemon's settings, typed, with units in the names.  Construction
    validates, so every Config satisfies the bounds."""

    self_ballooning: bool = False
    self_interval_s: int = 1
    interval_s: int = 1
    down_hysteresis: int = 10     # 0 = balloon down at once
    up_hysteresis: int = 1        # 1 = at once (a 0 in the file is read as 1)
    min_mem_mb: int = 0           # 0 = heuristic from the max-memory high-water mark
    min_policy: str = MIN_POLICY_2008  # without it, the floor's rule: "2008" or "adaptive"
    maxmem_file: str = "/var/run/xenballoon-maxmem"
    send_meminfo: bool = True
    send_vmstat: bool = True
    send_uptime: bool = True
    xenstore_backend: str = "auto"  # native where /dev/xen/xenbus is, else cli
    self_reserve_pct: int = 10    # headroom over Committed_AS, % of the high-water mark
    publish_threshold_mb: int = 30  # republish the stats when a number dom0 reads moved more
    publish_max_s: int = DEFAULT_PUBLISH_MAX_S  # and at least this often

    def __post_init__(self) -> None:
        check_fields(self, _SPECS_BY_FIELD)


def check_fields(record: object, specs_by_field: Dict[str, Spec]) -> None:
    """Raise ValueError for a field of ``record`` outside its spec's bounds."""
    for name in fields(record):
        value = getattr(record, name)
        problem = specs_by_field[name].check_field(value)
        if problem is not None:
            raise ValueError(f"{type(record).__name__}.{name}={value!r}: {problem}")


# ---------------------------------------------------------------------------
# Schema: one entry per variable, in the order of etc/xenballoon.conf.

@frozen
class Spec:
    """One variable: its name in the file, its field in the program's record,
    and its kind: "bool", "flag" (0/1), "int" (lo..hi), "path" (absolute),
    "choice", "command" (a program name looked up on PATH, or an absolute
    path) or "words" (names separated by blanks or commas, each one
    ``[A-Za-z0-9_.-]``; a tuple of str)."""

    key: str
    field: str
    kind: str
    lo: int = 0
    hi: int = 0
    field_lo: Optional[int] = None   # bound on the Config field when it differs from the file's
    choices: Tuple[str, ...] = ()
    zero_is_one: bool = False        # a 0 in the file is read as 1, with a warning

    def describe(self) -> str:
        if self.kind == "bool":
            return "must be true or false (also yes/no, on/off, 1/0)"
        if self.kind == "flag":
            return "must be 0 or 1"
        if self.kind == "path":
            return "must be an absolute path"
        if self.kind == "choice":
            return "must be one of " + ", ".join(f'"{c}"' for c in self.choices)
        if self.kind == "command":
            return "must be a program name or an absolute path"
        if self.kind == "words":
            return ("must be names separated by blanks or commas, each of letters, "
                    f"digits, '_', '.' or '-' (at most {MAX_WORDS} of {MAX_WORD_CHARS} characters)")
        return f"must be an integer > {self.lo - 1}" if self.lo > 0 else "must be an integer >= 0"

    def convert(self, raw: str) -> Tuple[object, Optional[str]]:
        """(typed value, None) or (None, reason)."""
        if self.kind == "bool":
            word = raw.lower() if raw.isascii() else ""
            if word in _TRUE_WORDS:
                return True, None
            if word in _FALSE_WORDS:
                return False, None
            return None, self.describe()
        if self.kind == "flag":
            return ({"0": False, "1": True}[raw], None) if raw in ("0", "1") else (None, self.describe())
        if self.kind == "choice":
            return (raw, None) if raw in self.choices else (None, self.describe())
        if self.kind == "words":
            words = tuple(w for w in re.split(r"[ \t,]+", raw) if w)
            if len(words) > MAX_WORDS or not all(_WORD.fullmatch(w) for w in words):
                return None, self.describe()
            return words, None
        if self.kind == "command" and "/" not in raw:
            ok = re.fullmatch(r"[A-Za-z0-9_.+-]{1,255}", raw, re.ASCII) is not None
            return (raw, None) if ok else (None, self.describe())
        if self.kind in ("path", "command"):
            if not raw.startswith("/"):
                return None, self.describe()
            if len(raw) > MAX_PATH_CHARS:
                return None, f"{self.describe()} of at most {MAX_PATH_CHARS} characters"
            if not raw.isprintable():
                return None, f"{self.describe()} without control or invisible characters"
            return raw, None
        # Integers: plain ASCII decimal only (Arabic-Indic digits, "0x10", "1e3", " 5", "+5" are not).
        if not re.fullmatch(r"[0-9]+", raw, re.ASCII):
            return None, self.describe()
        if len(raw) > 1 and raw[0] == "0":
            # The original fed these to `let`, which reads 010 as octal 8.
            return None, f"{self.describe()} without leading zeros (shell arithmetic reads 010 as octal)"
        if len(raw) > _MAX_INT_DIGITS or int(raw) > self.hi:
            return None, f"must be an integer <= {self.hi}"
        number = int(raw)
        if number < self.lo:
            return None, self.describe()
        return number, None

    def check_field(self, value: object) -> Optional[str]:
        """Validate an already-typed Config field (direct construction)."""
        if self.kind in ("bool", "flag"):
            return None if isinstance(value, bool) else "must be a bool"
        if self.kind in ("path", "choice", "command"):
            return self.convert(value)[1] if isinstance(value, str) else "must be a str"
        if self.kind == "words":
            if not isinstance(value, tuple) or not all(isinstance(w, str) for w in value):
                return "must be a tuple of str"
            return self.convert(" ".join(value))[1]
        if not isinstance(value, int) or isinstance(value, bool):
            return "must be an int"
        lo = self.lo if self.field_lo is None else self.field_lo
        if not lo <= value <= self.hi:
            return f"must be between {lo} and {self.hi}"
        return None


SPECS: Tuple[Spec, ...] = (
    Spec("XENBALLOON_SELF", "self_ballooning", "bool"),
    Spec("XENBALLOON_SELF_INTERVAL", "self_interval_s", "int", 1, MAX_INTERVAL_S),
    Spec("XENBALLOON_INTERVAL", "interval_s", "int", 1, MAX_INTERVAL_S),
    Spec("XENBALLOON_AUTO_DOWNHYSTERESIS", "down_hysteresis", "int", 0, MAX_HYSTERESIS),
    Spec("XENBALLOON_AUTO_UPHYSTERESIS", "up_hysteresis", "int", 0, MAX_HYSTERESIS, field_lo=1,
         zero_is_one=True),
    Spec("XENBALLOON_MINMEM", "min_mem_mb", "int", 0, MAX_MIN_MEM_MB),
    Spec("XENBALLOON_MIN_POLICY", "min_policy", "choice", choices=MIN_POLICIES),
    Spec("XENBALLOON_MAXMEMFILE", "maxmem_file", "path"),
    Spec("XENBALLOON_SEND_MEMINFO", "send_meminfo", "flag"),
    Spec("XENBALLOON_SEND_VMSTAT", "send_vmstat", "flag"),
    Spec("XENBALLOON_SEND_UPTIME", "send_uptime", "flag"),
    Spec("XENBALLOON_XENSTORE", "xenstore_backend", "choice", choices=XENSTORE_BACKENDS),
    Spec("XENBALLOON_SELF_RESERVE_PCT", "self_reserve_pct", "int", 0, 100),
    Spec("XENBALLOON_PUBLISH_THRESHOLD_MB", "publish_threshold_mb", "int", 0,
         MAX_PUBLISH_THRESHOLD_MB),
    Spec("XENBALLOON_PUBLISH_MAX_S", "publish_max_s", "int", 1, MAX_INTERVAL_S),
)
_SPECS_BY_FIELD: Dict[str, Spec] = {s.field: s for s in SPECS}
VARIABLES: Tuple[str, ...] = tuple(s.key for s in SPECS)


# ---------------------------------------------------------------------------
# The shell-subset lexer.

_ASSIGNMENT = re.compile(r"(?:export[ \t]+)?([A-Za-z_][A-Za-z0-9_]*)=", re.ASCII)
_BLANKS = " \t"
# Unquoted characters with a shell meaning we will not reproduce.  (`#` is
# literal inside a word and `*?[` are not globbed in an assignment, as in sh.)
_UNQUOTED_REFUSED = {
    "$": "$ expansion is not supported (the file is parsed, not executed)",
    "`": "command substitution is not supported (the file is parsed, not executed)",
    "\\": "backslash escapes are not supported; use single quotes",
    ";": "only one assignment per line is supported",
    "&": "shell operators are not supported",
    "|": "shell operators are not supported",
    "<": "redirections are not supported",
    ">": "redirections are not supported",
    "(": "arrays and subshells are not supported",
    ")": "arrays and subshells are not supported",
    "~": "~ expansion is not supported; write the full path",
}
_DOUBLE_QUOTED_REFUSED = {
    "$": _UNQUOTED_REFUSED["$"],
    "`": _UNQUOTED_REFUSED["`"],
    "\\": "backslash escapes are not supported; use single quotes",
}


class _LineError(Exception):
    def __init__(self, reason: str, key: Optional[str] = None, value: Optional[str] = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.key = key
        self.value = value


def _check_characters(line: str) -> None:
    for ch in line:
        code = ord(ch)
        if code == 0:
            raise _LineError("NUL character")
        if 0xDC80 <= code <= 0xDCFF:
            # load_config decodes with surrogateescape: this was a raw byte.
            raise _LineError(f"not valid UTF-8 (byte 0x{code - 0xDC00:02x})")
        if 0xD800 <= code <= 0xDFFF:
            raise _LineError(f"invalid character U+{code:04X}")


def _lex_line(line: str) -> Optional[Tuple[str, str]]:
    """(key, raw value) for an assignment, None for a blank or comment line."""
    if len(line) > MAX_LINE_CHARS:
        raise _LineError(f"line too long ({len(line)} characters, limit {MAX_LINE_CHARS})")
    _check_characters(line)
    text = line.strip(_BLANKS)
    if text == "" or text.startswith("#"):
        return None
    match = _ASSIGNMENT.match(text)
    if match is None:
        shown = text if len(text) <= 60 else text[:60] + "..."
        raise _LineError(f"not a KEY=value assignment: {_quote_for_message(shown)}")
    key = match.group(1)
    value, pos = _lex_word(text, match.end(), key)
    rest = text[pos:].lstrip(_BLANKS)
    if rest and not rest.startswith("#"):
        raise _LineError("only one assignment per line is supported, found more after the value",
                         key, value)
    return key, value


def _lex_word(text: str, pos: int, key: str) -> Tuple[str, int]:
    """Read one shell word starting at ``pos``; return (value, end)."""
    parts: List[str] = []
    while pos < len(text):
        ch = text[pos]
        if ch in _BLANKS:
            break
        if ch == "'":
            end = text.find("'", pos + 1)
            if end < 0:
                raise _LineError("unterminated single quote (values must fit on one line)", key)
            parts.append(text[pos + 1:end])
            pos = end + 1
        elif ch == '"':
            end = pos + 1
            while end < len(text) and text[end] != '"':
                if text[end] in _DOUBLE_QUOTED_REFUSED:
                    raise _LineError(_DOUBLE_QUOTED_REFUSED[text[end]], key)
                end += 1
            if end >= len(text):
                raise _LineError("unterminated double quote (values must fit on one line)", key)
            parts.append(text[pos + 1:end])
            pos = end + 1
        elif ch in _UNQUOTED_REFUSED:
            raise _LineError(_UNQUOTED_REFUSED[ch], key)
        else:
            parts.append(ch)
            pos += 1
    return "".join(parts), pos


def _quote_for_message(value: str, limit: int = 80) -> str:
    """"value" with anything unprintable escaped and long values cut short."""
    shown = value if len(value) <= limit else value[:limit]
    out = []
    for ch in shown:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch.isprintable():
            out.append(ch)
        else:
            code = ord(ch)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
    suffix = f"...({len(value)} characters)" if len(value) > limit else ""
    return '"' + "".join(out) + '"' + suffix


# ---------------------------------------------------------------------------
# Public API.

def parse_values(text: str, filename: str, specs: Tuple[Spec, ...]
                 ) -> Tuple[Dict[str, object], List[str]]:
    """Parse shell-style conf text against a table of specs.  Pure: no I/O.
    Returns {field: typed value} for the variables the text sets, and
    warnings ("file:line: ..."); raises ConfigError on the first bad line.
    A variable assigned twice takes the last value (as in sh), but every
    assignment must be valid."""
    by_key = {s.key: s for s in specs}
    if text.startswith("\ufeff"):
        text = text[1:]
    values: Dict[str, object] = {}
    warnings: List[str] = []
    for number, line in enumerate(text.split("\n"), start=1):
        if line.endswith("\r"):
            line = line[:-1]
        try:
            assignment = _lex_line(line)
        except _LineError as exc:
            raise ConfigError(filename, number, exc.key, exc.value, exc.reason) from None
        if assignment is None:
            continue
        key, raw = assignment
        spec = by_key.get(key)
        if spec is None:
            warnings.append(f"{filename}:{number}: unknown variable {key} (ignored)")
            continue
        value, problem = spec.convert(raw)
        if problem is not None:
            raise ConfigError(filename, number, key, raw, problem)
        if spec.zero_is_one and value == 0:
            # The original divides by it (balloon_to_target) and dies; 1 means "at once".
            warnings.append(f"{filename}:{number}: {key}=0 would divide by zero in the "
                            "original daemon; treated as 1 (balloon up at once)")
            value = 1
        values[spec.field] = value
    return values, warnings


def parse_config(text: str, filename: str) -> Tuple[Config, List[str]]:
    """Parse xenballoon.conf text.  Pure: no I/O.  Returns the Config and
    warnings; raises ConfigError on the first bad line."""
    values, warnings = parse_values(text, filename, SPECS)
    return Config(**values), warnings  # type: ignore[arg-type]


def render_config(config: object, specs: Tuple[Spec, ...] = SPECS) -> str:
    """A config record as KEY=value lines that parse_values (and sh) read back."""
    lines = []
    for spec in specs:
        value = getattr(config, spec.field)
        if spec.kind == "bool":
            word = "true" if value else "false"
        elif spec.kind == "flag":
            word = "1" if value else "0"
        elif spec.kind == "words":
            word = _shell_quote(" ".join(value)) if value else "''"
        elif isinstance(value, int):
            word = str(value)
        else:
            word = _shell_quote(value)
        lines.append(f"{spec.key}={word}")
    return "\n".join(lines) + "\n"


def _shell_quote(value: str) -> str:
    if re.fullmatch(r"[A-Za-z0-9_./:,+@%=-]+", value, re.ASCII):
        return value
    return "'" + value.replace("'", "'\"'\"'") + "'"


def read_config_text(path: str) -> str:
    """The text of ``path``.  Unreadable or oversized files are ConfigErrors
    naming the file; undecodable bytes are kept (surrogateescape) for the
    parser to report with their line number."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise ConfigError(path, None, None, None,
                          f"cannot read: {exc.strerror or exc}") from exc
    if len(data) > MAX_FILE_BYTES:
        raise ConfigError(path, None, None, None,
                          f"file too large (over {MAX_FILE_BYTES} bytes)")
    return data.decode("utf-8", errors="surrogateescape")


def load_config(path: str) -> Tuple[Config, List[str]]:
    """Read and parse the xenballoon.conf at ``path``."""
    return parse_config(read_config_text(path), path)


def find_config(root: Root, explicit: Optional[str],
                candidates: Tuple[str, ...] = CONFIG_CANDIDATES) -> Optional[str]:
    """The config file to load: ``explicit`` (from -c) as given, else the first
    existing of ``candidates`` (/etc/sysconfig/xenballoon.conf,
    /etc/default/xenballoon.conf) under ``root``; None means "no config
    file, use the defaults"."""
    if explicit is not None:
        return explicit
    for candidate in candidates:
        path = root.path(candidate)
        if os.path.exists(path):
            return path
    return None


__all__ = ["Config", "ConfigError", "SPECS", "Spec", "VARIABLES", "XENSTORE_BACKENDS",
           "check_fields", "find_config", "load_config", "parse_config", "parse_values",
           "read_config_text", "render_config"]
