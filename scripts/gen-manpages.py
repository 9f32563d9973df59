#!/usr/bin/env python3
"""Generate the man pages from the code, so they cannot drift from it.

    python3 scripts/gen-manpages.py OUTDIR

writes xenballoond.8, xenballoon.conf.5 and xenballoon-monitor.1 into OUTDIR.
The options come from each program's argparse parser (``build_parser()``), the
config variables from the schemas in xenballoond/guest/settings.py and
xenballoond/dom0/settings.py (name, type, bounds,
default) and their meaning from the comments of the shipped
etc/xenballoon.conf.  The prose around them is here.  Run at build time
(debian/rules, rpm/xenballoond.spec, ``make man``): no generated page is
committed.  Importing the parsers needs python-daemon's and lockfile's
packages installed, as building the packages does anyway.

``SOURCE_DATE_EPOCH`` (set by dpkg-buildpackage and rpmbuild) fixes the date.
"""
from __future__ import annotations

import argparse
import importlib
import os
import re
import sys
import time
from typing import Dict, List, Optional, Sequence, Tuple

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if TOP not in sys.path:
    sys.path.insert(0, TOP)

from xenballoond import __version__  # noqa: E402
from xenballoond import shellconf  # noqa: E402
from xenballoond.guest import settings as configmod  # noqa: E402
from xenballoond.guest.settings import CONFIG_CANDIDATES  # noqa: E402
from xenballoond.paths import DEFAULT_PIDFILE  # noqa: E402

SHIPPED_CONF = os.path.join(TOP, "etc", "xenballoon.conf")


# --------------------------------------------------------------------------
# The programs: (page name, section, module with build_parser()).

PROGRAMS: Tuple[Tuple[str, int, str], ...] = (
    ("xenballoond", 8, "xenballoond.guest.cli"),
    ("xenballoon-monitor", 1, "xenballoond.dom0.monitor"),
    ("xenballoon-balancer", 8, "xenballoond.dom0.balancer"),
)


def load_parser(module: str) -> argparse.ArgumentParser:
    return importlib.import_module(module).build_parser()


# --------------------------------------------------------------------------
# roff

def esc(text: str) -> str:
    """Text for a roff line: backslashes and minus signs escaped (so options
    copy and paste as ASCII), a leading control character neutralised."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    if text[:1] in (".", "'"):
        text = "\\&" + text
    return text


def bold(text: str) -> str:
    return f"\\fB{esc(text)}\\fR"


def italic(text: str) -> str:
    return f"\\fI{esc(text)}\\fR"


def para(text: str) -> str:
    """A paragraph of prose; `code` becomes bold."""
    parts = re.split(r"`([^`]*)`", " ".join(text.split()))
    out = "".join(bold(p) if i % 2 else esc(p) for i, p in enumerate(parts))
    return ".PP\n" + ("\\&" + out if out[:1] in (".", "'") else out)


def header(name: str, section: int, title: str) -> List[str]:
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    stamp = time.gmtime(int(epoch)) if epoch and epoch.isdigit() else time.gmtime()
    date = time.strftime("%Y-%m-%d", stamp)
    return [f'.TH "{name.upper()}" "{section}" "{date}" "xenballoond {__version__}" "{title}"',
            ".nh", ".ad l"]  # no hyphenation, ragged right: paths and options stay whole


def option_actions(parser: argparse.ArgumentParser) -> List[argparse.Action]:
    return [a for a in parser._actions if a.option_strings and a.help != argparse.SUPPRESS]


def _metavar(action: argparse.Action) -> Optional[str]:
    if action.nargs == 0:
        return None
    return action.metavar or action.dest.upper()


def synopsis(parser: argparse.ArgumentParser) -> List[str]:
    lines = [".SH SYNOPSIS", f".B {esc(parser.prog)}"]
    for action in option_actions(parser):
        flag = action.option_strings[0]
        meta = _metavar(action)
        lines.append(f"[{bold(flag)}" + (f" {italic(meta)}" if meta else "") + "]")
    return lines


def options(parser: argparse.ArgumentParser) -> List[str]:
    formatter = parser._get_formatter()
    lines = [".SH OPTIONS"]
    for action in option_actions(parser):
        meta = _metavar(action)
        flags = ", ".join(bold(f) + (f" {italic(meta)}" if meta else "")
                          for f in action.option_strings)
        help_text = formatter._expand_help(action) if action.help else ""
        lines += [".TP", flags, esc(" ".join(help_text.split()))]
    return lines


def section(title: str, paragraphs: Sequence[str]) -> List[str]:
    return [f".SH {title}"] + [para(p) for p in paragraphs]


def items(title: str, entries: Sequence[Tuple[str, str]]) -> List[str]:
    lines = [f".SH {title}"]
    for term, text in entries:
        lines += [".TP", bold(term), esc(" ".join(text.split()))]
    return lines


# --------------------------------------------------------------------------
# The config file's variables: the schema plus the shipped file's comments.

def conf_comments(path: str = SHIPPED_CONF) -> Dict[str, str]:
    """KEY -> the prose of the comment block above KEY=... in the shipped conf
    (the "## Type:"/"## Default:" lines left out: the schema gives those)."""
    meanings: Dict[str, str] = {}
    block: List[str] = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if line.startswith("## "):
                block = []  # a new variable's header starts its block
            elif line.startswith("#"):
                block.append(line[1:].strip())
            elif "=" in line and not line.startswith(" "):
                meanings[line.split("=", 1)[0]] = " ".join(w for w in block if w)
                block = []
            else:
                block = []
    return meanings


def variable_type(spec: shellconf.Spec) -> str:
    if spec.kind == "bool":
        return "boolean: true or false (yes/no, on/off, 1/0 also)"
    if spec.kind == "flag":
        return "0 or 1"
    if spec.kind == "path":
        return "an absolute path"
    if spec.kind == "choice":
        return "one of " + ", ".join(spec.choices)
    if spec.kind == "command":
        return "a program: a name looked up on PATH, or an absolute path"
    if spec.kind == "words":
        return "names separated by blanks or commas"
    return f"integer from {spec.lo} to {spec.hi}"


def variables(specs: Sequence[shellconf.Spec] = configmod.SPECS, record: object = None,
              conf: str = SHIPPED_CONF) -> List[Tuple[str, str, str, str]]:
    """(KEY, type, default as written in the file, meaning), in the file's order."""
    defaults = dict(line.split("=", 1) for line in shellconf.render_values(
        configmod.Config() if record is None else record, tuple(specs)).splitlines()
        if "=" in line and not line.startswith("#"))
    meanings = conf_comments(conf)
    out = []
    for spec in specs:  # the schema: kind and bounds
        out.append((spec.key, variable_type(spec), defaults[spec.key],
                    meanings.get(spec.key, "")))
    return out


def variables_section(entries: List[Tuple[str, str, str, str]]) -> List[str]:
    lines = [".SH VARIABLES"]
    for key, kind, default, meaning in entries:
        lines += [".TP", bold(key),
                  f"Type: {esc(kind)}. Default: {bold(default.strip(chr(39)) or '(empty)')}.",
                  ".br", esc(meaning)]
    return lines


# --------------------------------------------------------------------------
# The pages.

def page_daemon(parser: argparse.ArgumentParser) -> str:
    lines = header("xenballoond", 8, "System Administration")
    lines += [".SH NAME", "xenballoond \\- in\\-guest Xen memory ballooning daemon"]
    lines += synopsis(parser)
    lines += section("DESCRIPTION", [
        parser.description or "",
        "Each iteration reads dom0's keys in the guest's `memory/` directory of xenstore "
        "(target, selfballoon, interval, downhysteresis, uphysteresis, minmem, softmaxmem, "
        "minpolicy), reads /proc/meminfo "
        "and the balloon's current size, and raises the memory high-water mark. "
        "Self-ballooning, the target is Committed_AS plus the kernel's reservation plus "
        "XENBALLOON_SELF_RESERVE_PCT; directed, it is dom0's memory/target. The daemon moves "
        "1/n of the way (the hysteresis), never below the minimum target (the 2008 curve of "
        "the memory high-water mark, or with XENBALLOON_MIN_POLICY=adaptive what the guest "
        "needs to run), writes the target "
        "to the balloon driver and publishes selftarget, meminfo, vmstat and uptime, under "
        "memory/ or, where the guest may not write there (xl), under data/xenballoon/.",
        "It refuses to balloon domain 0 and exits 0 there, and without a balloon driver.",
    ])
    lines += options(parser)
    lines += items("EXIT STATUS", [
        ("0", "started; or one iteration done (--once); or the config is valid "
              "(--check-config); or nothing to do (domain 0, no balloon driver)"),
        ("1", "already running, or the daemon did not start"),
        ("2", "bad config or usage"),
    ])
    lines += items("SIGNALS", [
        ("SIGTERM, SIGINT", "stop, and remove the PID file"),
        ("SIGHUP", "reload the config file; a bad one is refused and the running config stays"),
    ])
    lines += items("FILES", [
        (CONFIG_CANDIDATES[0], "the config file on Red Hat and SUSE, read first"),
        (CONFIG_CANDIDATES[1], "the config file on Debian"),
        (DEFAULT_PIDFILE, "the PID file"),
        (configmod.Config().maxmem_file,
         "the memory high-water mark in kB (XENBALLOON_MAXMEMFILE)"),
        ("/sys/devices/system/xen_memory/xen_memory0/target",
         "the balloon driver (or /proc/xen/balloon on 2008 kernels)"),
    ])
    lines += section("NOTES", [
        "Detached, xenballoond logs to syslog (daemon facility); with -f, to standard error "
        "(the systemd unit runs it so). By default (XENBALLOON_XENSTORE=auto) xenballoond "
        "speaks the xenstore protocol itself over /dev/xen/xenbus, and runs the clients of "
        "xenstore-utils where that device is absent or the config says "
        "XENBALLOON_XENSTORE=cli.",
    ])
    lines += [".SH SEE ALSO", "\\fBxenballoon.conf\\fR(5), \\fBxenballoon\\-monitor\\fR(1), "
              "\\fBxl\\fR(1)"]
    return "\n".join(lines) + "\n"


def page_monitor(parser: argparse.ArgumentParser) -> str:
    lines = header("xenballoon-monitor", 1, "User Commands")
    lines += [".SH NAME", "xenballoon\\-monitor \\- show every Xen guest's ballooning statistics"]
    lines += synopsis(parser)
    lines += section("DESCRIPTION", [
        parser.description or "",
        parser.epilog or "",
        "With --prometheus FILE it writes the same numbers in Prometheus text format for "
        "node_exporter's textfile collector: one metric per column, in bytes and seconds, "
        "labelled by domid, and the host's free memory. Run it from a timer every 15 to 60 "
        "seconds; the file is replaced in one rename.",
    ])
    lines += options(parser)
    lines += items("EXIT STATUS", [
        ("0", "the table (or JSON, or metrics file) was written"),
        ("1", "xenstore could not be read, or the metrics file could not be written"),
        ("2", "bad usage or config"),
    ])
    lines += [".SH SEE ALSO", "\\fBxenballoond\\fR(8), \\fBxenballoon\\-balancer.conf\\fR(5), "
              "\\fBwatch\\fR(1), \\fBxl\\fR(1)"]
    return "\n".join(lines) + "\n"


def page_conf() -> str:
    lines = header("xenballoon.conf", 5, "File Formats")
    lines += [".SH NAME", "xenballoon.conf \\- configuration of the xenballoond daemon"]
    lines += [".SH SYNOPSIS"] + [f".B {esc(p)}\n.br" for p in CONFIG_CANDIDATES]
    lines += section("DESCRIPTION", [
        f"xenballoond reads {CONFIG_CANDIDATES[0]} (Red Hat, SUSE) or, if that does not "
        f"exist, {CONFIG_CANDIDATES[1]} (Debian), or the file given with -c. With no file "
        "the defaults below apply.",
        "The file is read, not executed: KEY=value lines, optionally prefixed with `export`, "
        "'single' or \"double\" quotes, blank lines and # comments, also after a value. "
        "$ expansion, command substitution, backslashes, several assignments on a line and "
        "any invalid value are errors: xenballoond refuses to start (exit 2) and names the "
        "file, line, variable and value; on SIGHUP the running config stays. Unknown "
        "variables are ignored with a warning. `xenballoond --check-config` checks the file.",
        "Keys in {braces} are xenstore keys under the guest's /local/domain/<domid>/, "
        "written by domain 0 to override a setting; an override that is not an integer in "
        "range (for {memory/minpolicy}: not 2008 or adaptive) is ignored, and logged once.",
    ])
    lines += variables_section(variables())
    lines += [".SH SEE ALSO", "\\fBxenballoond\\fR(8), \\fBxenballoon\\-monitor\\fR(1)"]
    return "\n".join(lines) + "\n"


def page_balancer(parser: argparse.ArgumentParser) -> str:
    lines = header("xenballoon-balancer", 8, "System Administration")
    lines += [".SH NAME", "xenballoon\\-balancer \\- domain 0's memory balancer for Xen guests"]
    lines += synopsis(parser)
    lines += section("DESCRIPTION", [
        parser.description or "",
        "Every interval it reads what each opted-in guest's xenballoond publishes "
        "(Committed_AS, MemTotal), the guests' sizes and static-max from xl and xenstore, "
        "and the host's free memory; it gives each guest its need (Committed_AS plus the "
        "kernel's reservation plus a headroom), never below the guest's minimum (the 2008 "
        "curve of static-max; for a guest whose memory/minpolicy is adaptive, what it needs "
        "to run, within a hard bound and that curve, as its xenballoond computes it) nor above "
        "static-max, shares the rest, and sets the targets with xl mem-set, decreases "
        "first. A guest that does not move toward its target is marked uncooperative and "
        "held.",
        "free SIZE pauses balancing and asks the guests above their need to give memory "
        "back until SIZE is free, for xl create; resume balances again.",
        "With no guest opted in it still keeps memory/target true for every guest that "
        "self-balloons (XENBALLOON_BALANCER_FOLLOW): it copies the target the guest's "
        "xenballoond sets into memory/target, up at once, down once the guest holds no more, "
        "so that xl save, xl restore, xl migrate and xendomains rebuild the guest whole; "
        "gives such a guest its static-max as its hypervisor limit, once per domain (xl "
        "create, restore and migrate leave it at its target + 1 MiB); and lets a domain "
        "xl migrate-receive builds hold what the host could give it until it is built, so "
        "that a guest growing during the pre-copy fits.",
        "restore FILE [--memory SIZE] brings back a guest whose xl restore failed because it "
        "held more than its saved memory/target: it restores the intact save file with room "
        "for its saved maxmem (or SIZE), sets memory/target to what the guest holds, and "
        "unpauses it.",
        parser.epilog or "",
    ])
    lines += options(parser)
    lines += [".SH SEE ALSO", "\\fBxenballoon\\-balancer.conf\\fR(5), \\fBxenballoond\\fR(8), "
              "\\fBxenballoon\\-monitor\\fR(1), \\fBxl\\fR(1)"]
    return "\n".join(lines) + "\n"


def page_balancer_conf() -> str:
    from xenballoond.dom0 import settings
    conf = os.path.join(TOP, "etc", "xenballoon-balancer.conf")
    lines = header("xenballoon-balancer.conf", 5, "File Formats")
    lines += [".SH NAME",
              "xenballoon\\-balancer.conf \\- configuration of domain 0's memory balancer"]
    lines += [".SH SYNOPSIS"] + [f".B {esc(p)}\n.br" for p in settings.CONFIG_CANDIDATES]
    lines += section("DESCRIPTION", [
        "Read as xenballoon.conf(5) is: parsed, never executed; a bad value names the "
        "file, line, variable and value and the balancer refuses to start.",
    ])
    lines += variables_section(variables(settings.SPECS, settings.BalancerConfig(), conf))
    lines += [".SH SEE ALSO", "\\fBxenballoon\\-balancer\\fR(8), \\fBxenballoon.conf\\fR(5)"]
    return "\n".join(lines) + "\n"


def render_all() -> Dict[str, str]:
    """File name -> roff text, for every page."""
    pages: Dict[str, str] = {"xenballoon.conf.5": page_conf(),
                             "xenballoon-balancer.conf.5": page_balancer_conf()}
    render = {"xenballoond": page_daemon, "xenballoon-monitor": page_monitor,
              "xenballoon-balancer": page_balancer}
    for name, sec, module in PROGRAMS:
        pages[f"{name}.{sec}"] = render[name](load_parser(module))
    return pages


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(description="Write the man pages into OUTDIR.")
    p.add_argument("outdir")
    args = p.parse_args(argv)
    os.makedirs(args.outdir, exist_ok=True)
    for filename, text in render_all().items():
        with open(os.path.join(args.outdir, filename), "w", encoding="utf-8") as f:
            f.write(text)
        print(os.path.join(args.outdir, filename))
    return 0


if __name__ == "__main__":
    sys.exit(main())
