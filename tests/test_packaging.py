"""Shipping: one version, a complete sdist, man pages that list every option and
config variable, and the real .deb and .rpm builds, checked with lintian and
rpmlint.

The package builds run Debian's own tools with Debian's python3 (PATH limited
to the system's: a virtualenv's or pyenv's python3 has no dh-python).  A
missing tool skips them, naming the Debian package; with CI=true it fails.
"""
from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from xenballoond import __version__
from xenballoond.guest.settings import VARIABLES
from xenballoond.dom0.settings import SPECS as BALANCER_SPECS

from tests.debbuild import REPO, SYSTEM_PATH, build_debs, copy_tree, system_env

SYSTEM_PYTHON = "/usr/bin/python3"
IN_CI = os.environ.get("CI") == "true"


def need(*tools: tuple[str, str]) -> None:
    """Skip (fail in CI) unless every (program or file, Debian package) is there."""
    missing = [pkg for tool, pkg in tools
               if not (os.path.exists(tool) if tool.startswith("/")
                       else shutil.which(tool, path=SYSTEM_PATH))]
    if missing:
        why = "missing Debian packages: " + " ".join(sorted(set(missing)))
        if IN_CI:
            pytest.fail("CI=true but " + why, pytrace=False)
        pytest.skip(why)


def system_python_has(*modules: str) -> None:
    for module in modules:
        r = subprocess.run([SYSTEM_PYTHON, "-c", f"import {module}"], capture_output=True)
        if r.returncode != 0:
            need(("/nonexistent", "python3-" + module))


def run(cmd, cwd, **kw) -> subprocess.CompletedProcess[str]:
    env = system_env(**kw.pop("env", {}))
    r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=900, **kw)
    assert r.returncode == 0, f"{cmd} exited {r.returncode}\n{r.stdout[-6000:]}\n{r.stderr[-6000:]}"
    return r


# --------------------------------------------------------------------------
# Man pages: generated from the code.

def load_generator():
    spec = importlib.util.spec_from_file_location("gen_manpages", REPO / "scripts" / "gen-manpages.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def plain(roff: str) -> str:
    return roff.replace("\\-", "-").replace("\\e", "\\").replace("\\fB", "").replace(
        "\\fI", "").replace("\\fR", "")


@pytest.fixture(scope="module")
def pages() -> dict:
    return {name: plain(text) for name, text in load_generator().render_all().items()}


def test_every_option_is_in_its_man_page(pages) -> None:
    gen = load_generator()
    assert [name for name, *_ in gen.PROGRAMS] == ["xenballoond", "xenballoon-monitor",
                                                    "xenballoon-balancer"]
    for name, section, module in gen.PROGRAMS:
        page = pages[f"{name}.{section}"]
        parser = gen.load_parser(module)
        options = [a for a in parser._actions if a.option_strings]
        assert {"--config", "--version"} <= {s for a in options for s in a.option_strings}
        synopsis, body = page.split(".SH OPTIONS")[0], page.split(".SH OPTIONS")[1]
        for action in options:
            assert action.option_strings[0] in synopsis, (name, action.option_strings)
            for flag in action.option_strings:
                assert re.search(rf"^{re.escape(flag)}\b", body, re.M) or \
                    f", {flag}" in body, (name, flag)
            if action.help:
                assert " ".join(action.help.split())[:40] in " ".join(body.split()), action.help
    assert "--prometheus FILE" in pages["xenballoon-monitor.1"]


@pytest.mark.parametrize("conf, names", [
    ("xenballoon.conf", VARIABLES),
    ("xenballoon-balancer.conf", tuple(s.key for s in BALANCER_SPECS))])
def test_every_config_variable_is_in_the_conf_page(pages, conf, names) -> None:
    page = pages[f"{conf}.5"]
    variables = page.split(".SH VARIABLES")[1].split(".SH SEE ALSO")[0]
    entries = variables.split(".TP\n")[1:]
    assert [e.split("\n")[0] for e in entries] == list(names)
    defaults = dict(line.split("=", 1) for line in
                    (REPO / "etc" / conf).read_text().splitlines()
                    if re.match(r"XENBALLOON_\w+=", line))
    assert set(defaults) == set(names)  # the shipped file sets each one, to its default
    for entry in entries:
        key, typeline, _, meaning = entry.split("\n")[:4]
        assert f"Default: {defaults[key].strip(chr(39)) or '(empty)'}." in typeline, entry
        assert len(meaning) > 20, entry  # the shipped file's comment


def test_man_pages_format_without_warnings(tmp_path) -> None:
    if shutil.which("groff") is None:
        pytest.skip("groff missing (Debian package groff-base)")
    gen = load_generator()
    for name, text in gen.render_all().items():
        r = subprocess.run(["groff", "-man", "-Tutf8", "-ww", "-z"], input=text,
                           capture_output=True, text=True, timeout=60)
        assert (r.returncode, r.stderr) == (0, ""), name


def test_the_generator_writes_the_pages(tmp_path) -> None:
    r = subprocess.run([sys.executable, str(REPO / "scripts" / "gen-manpages.py"), str(tmp_path)],
                       capture_output=True, text=True, timeout=60,
                       env=dict(os.environ, SOURCE_DATE_EPOCH="1764288000"))
    assert r.returncode == 0, r.stderr
    assert sorted(os.listdir(tmp_path)) == ["xenballoon-balancer.8", "xenballoon-balancer.conf.5",
                                            "xenballoon-monitor.1", "xenballoon.conf.5",
                                            "xenballoond.8"]
    head = (tmp_path / "xenballoond.8").read_text().splitlines()[0]
    assert head == f'.TH "XENBALLOOND" "8" "2025-11-28" "xenballoond {__version__}" ' \
                   '"System Administration"'


# --------------------------------------------------------------------------
# One version; a complete sdist.

def test_one_version_everywhere() -> None:
    r = subprocess.run([sys.executable, "setup.py", "--version"], cwd=REPO, capture_output=True,
                       text=True, timeout=120)
    assert r.stdout.strip().splitlines()[-1] == __version__
    changelog = (REPO / "debian" / "changelog").read_text().splitlines()[0]
    assert changelog.startswith(f"xenballoond ({__version__}) ")
    spec = (REPO / "rpm" / "xenballoond.spec").read_text()
    assert re.search(r"^Version:\s+(\S+)$", spec, re.M).group(1) == __version__
    assert re.search(rf"^\* .* - {re.escape(__version__)}-1$", spec, re.M)


def test_sdist_has_everything_to_build_test_and_package(tmp_path) -> None:
    src = copy_tree(tmp_path)
    r = subprocess.run([sys.executable, "setup.py", "-q", "sdist", "-d", str(tmp_path / "dist")],
                       cwd=src, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    [tarball] = (tmp_path / "dist").iterdir()
    with tarfile.open(tarball) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True)
    if tracked.returncode == 0 and tracked.stdout:
        missing = {f for f in tracked.stdout.split() if not f.startswith(".")} - names
        assert not missing, missing
    for path in ("README.md", "pyproject.toml", "setup.py", "etc/xenballoon.conf",
                 "initscripts/xenballoond", "initscripts/xenballoond.service",
                 "scripts/gen-manpages.py", "scripts/install.sh", "debian/control",
                 "debian/rules", "rpm/xenballoond.spec", "tests/test_packaging.py",
                 "tests/original/xenballoond", "xenballoond/dom0/prometheus.py"):
        assert path in names, path
    assert not any("__pycache__" in n or n.endswith(".pyc") for n in names)


# --------------------------------------------------------------------------
# Python: what setup.py claims is what runs.

OLDEST = "3.9"


def oldest_python() -> str | None:
    """pyenv's python3.9 (the CI machines have it), else one on PATH that runs."""
    candidates = [str(p) for p in
                  sorted(Path.home().glob(f".pyenv/versions/{OLDEST}.*/bin/python{OLDEST}"))]
    candidates += [p for p in (shutil.which(f"python{OLDEST}"),) if p]
    for python in candidates:
        r = subprocess.run([python, "-c", "import sys; print(sys.version_info[:2])"],
                           capture_output=True, text=True)
        if r.returncode == 0 and r.stdout.strip() == str(tuple(map(int, OLDEST.split(".")))):
            return python
    return None


def test_python_requires_is_the_oldest_python_that_runs_it(tmp_path) -> None:
    setup = (REPO / "setup.py").read_text()
    assert f'python_requires=">={OLDEST}"' in setup
    python = oldest_python()
    if python is None:
        if IN_CI:
            pytest.fail(f"CI=true but no python{OLDEST} (pyenv's) to check python_requires")
        pytest.skip(f"no python{OLDEST} to check python_requires with")
    # Every module compiles and imports on it (python-daemon and lockfile are pure
    # Python: the test environment's copies serve), and the daemon does a tick.
    import daemon
    import lockfile
    deps = {os.path.dirname(os.path.dirname(m.__file__)) for m in (daemon, lockfile)}
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), *sorted(deps)]))
    env.pop("PYTHONHOME", None)
    code = ("import pkgutil, importlib, xenballoond\n"
            "mods = [m.name for m in pkgutil.walk_packages(xenballoond.__path__, 'xenballoond.')\n"
            "        if not m.name.endswith('__main__')]\n"
            "[importlib.import_module(m) for m in mods]\n"
            "print(len(mods))\n")
    r = subprocess.run([python, "-c", code], env=env, cwd=tmp_path, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert int(r.stdout) > 30
    from tests.guestroot import make_guest
    root = tmp_path / "guest"
    make_guest(str(root), memtotal_kb=380000, committed_kb=200000, current_kb=393216)
    for args in (["--check-config", "-c", str(REPO / "etc" / "xenballoon.conf")],
                 ["--once", "--root", str(root)]):
        r = subprocess.run([python, "-m", "xenballoond.guest.cli", *args], env=env, cwd=tmp_path,
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, (args, r.stdout, r.stderr)


# --------------------------------------------------------------------------
# The Debian packages.

DEB_TOOLS = (("dpkg-buildpackage", "dpkg-dev"), ("dh", "debhelper"), ("dh_python3", "dh-python"),
             ("/usr/share/dh-python/dhpython/build/plugin_pyproject.py", "pybuild-plugin-pyproject"),
             ("/usr/bin/python3", "python3-all"), ("lintian", "lintian"), ("fakeroot", "fakeroot"))


@pytest.fixture(scope="module")
def debs(tmp_path_factory) -> dict:
    need(*DEB_TOOLS)
    system_python_has("setuptools", "lockfile")
    return build_debs(tmp_path_factory.mktemp("deb"))


def deb_files(deb: Path) -> list[str]:
    out = run(["dpkg-deb", "-c", str(deb)], cwd=deb.parent).stdout
    return [line.split()[5].lstrip(".") for line in out.splitlines()
            if not line.startswith("d")]


def deb_control(deb: Path, member: str) -> str:
    tmp = deb.parent / ("ctl-" + deb.name)
    run(["dpkg-deb", "-e", str(deb), str(tmp)], cwd=deb.parent)
    path = tmp / member
    return path.read_text() if path.exists() else ""


def test_deb_guest_package(debs) -> None:
    deb = debs["xenballoond"]
    files = deb_files(deb)
    for path in ("/usr/bin/xenballoond", "/etc/default/xenballoon.conf", "/etc/init.d/xenballoond",
                 "/lib/systemd/system/xenballoond.service", "/usr/share/man/man8/xenballoond.8.gz",
                 "/usr/share/man/man5/xenballoon.conf.5.gz"):
        assert path in files, path
    assert "/usr/lib/python3/dist-packages/xenballoond/guest/cli.py" in files
    assert not any("/sim/" in f or "/dom0/" in f or f.endswith("-sim") or "monitor" in f
                   for f in files), files
    assert set(deb_control(deb, "conffiles").split()) == {"/etc/default/xenballoon.conf",
                                                           "/etc/init.d/xenballoond"}
    fields = run(["dpkg-deb", "-f", str(deb), "Depends", "Recommends"], cwd=deb.parent).stdout
    assert "python3-daemon" in fields and "python3-lockfile" in fields
    assert "Recommends: xenstore-utils" in fields
    postinst = deb_control(deb, "postinst")
    assert "deb-systemd-helper enable 'xenballoond.service'" in postinst
    assert "update-rc.d xenballoond defaults" in postinst
    postrm = deb_control(deb, "postrm")
    assert re.search(r'"\$1" = purge \]; then\n\s+rm -f /run/xenballoon-maxmem '
                     r'/run/xenballoon-maxmem.boot /run/xenballoond.pid', postrm)
    unit = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(deb)], capture_output=True)
    with tarfile.open(fileobj=__import__("io").BytesIO(unit.stdout)) as tar:
        text = tar.extractfile("./lib/systemd/system/xenballoond.service").read().decode()
        conf = tar.extractfile("./etc/default/xenballoon.conf").read().decode()
    assert "ExecStart=/usr/bin/xenballoond -f" in text and "/usr/local" not in text
    assert conf == (REPO / "etc" / "xenballoon.conf").read_text()


def installed_unit(program: str, bindir: str) -> str:
    """initscripts/PROGRAM.service, the unit the tests run through systemd-analyze,
    with the program where the package installs it: what every package must ship."""
    text = (REPO / "initscripts" / f"{program}.service").read_text()
    return text.replace(f"/usr/local/bin/{program}", f"{bindir}/{program}")


def deb_member(deb: Path, member: str) -> str:
    data = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(deb)], capture_output=True,
                          check=True, timeout=120).stdout
    with tarfile.open(fileobj=__import__("io").BytesIO(data)) as tar:
        f = tar.extractfile("." + member)
        assert f is not None, member
        return f.read().decode()


@pytest.mark.parametrize("package, program", [("xenballoond", "xenballoond"),
                                              ("xenballoon-dom0", "xenballoon-balancer")])
def test_deb_ships_the_tested_unit(debs, package, program) -> None:
    """Issue 22: the unit in the .deb is the source tree's, byte for byte, but for
    the program's path (/usr/bin)."""
    shipped = deb_member(debs[package], f"/lib/systemd/system/{program}.service")
    assert shipped == installed_unit(program, "/usr/bin")


def test_deb_library_and_dom0_packages(debs) -> None:
    lib = deb_files(debs["python3-xenballoond"])
    assert "/usr/lib/python3/dist-packages/xenballoond/shellconf.py" in lib
    assert "/usr/lib/python3/dist-packages/xenballoond/xenstore/native.py" in lib
    assert not any(part in f for f in lib for part in ("/xenballoond/sim/", "/xenballoond/dom0/",
                                                       "/xenballoond/guest/"))
    assert not any(f.startswith("/usr/bin/") for f in lib)
    dom0 = deb_files(debs["xenballoon-dom0"])
    assert "/usr/bin/xenballoon-monitor" in dom0
    assert "/usr/lib/python3/dist-packages/xenballoond/dom0/prometheus.py" in dom0
    assert "/usr/lib/python3/dist-packages/xenballoond/dom0/monitor.py" in dom0
    assert "/usr/share/man/man1/xenballoon-monitor.1.gz" in dom0
    assert "/usr/share/xenballoon-dom0/grafana/xenballoon-monitor.json" in dom0
    for path in ("/usr/bin/xenballoon-balancer", "/etc/default/xenballoon-balancer.conf",
                 "/etc/init.d/xenballoon-balancer", "/lib/systemd/system/xenballoon-balancer.service",
                 "/usr/lib/python3/dist-packages/xenballoond/dom0/balancer.py",
                 "/usr/share/man/man8/xenballoon-balancer.8.gz",
                 "/usr/share/man/man5/xenballoon-balancer.conf.5.gz"):
        assert path in dom0, path
    assert not any("sim" in f for f in dom0)
    postrm = deb_control(debs["xenballoon-dom0"], "postrm")
    assert re.search(r'"\$1" = purge \]; then\n\s+rm -f /run/xenballoon-balancer.pid '
                     r'/run/xenballoon-balancer.lock \\\n\s+/run/xenballoon-balancer.json '
                     r'/run/xenballoon-balancer.paused\n', postrm), postrm


def test_lintian_finds_no_errors_or_warnings(debs) -> None:
    changes = sorted(next(iter(debs.values())).parent.glob("*.changes"))
    r = subprocess.run(["lintian", "--pedantic", *map(str, changes)], capture_output=True,
                       text=True, timeout=600, env=dict(os.environ, PATH=SYSTEM_PATH))
    bad = [line for line in r.stdout.splitlines() if line[:2] in ("E:", "W:")]
    assert bad == [], r.stdout


# --------------------------------------------------------------------------
# The RPM, built with Debian's rpm (the Fedora macros missing: the spec has
# fallbacks), linted with rpmlint.

@pytest.fixture(scope="module")
def rpms(tmp_path_factory) -> dict:
    need(("rpmbuild", "rpm"), ("rpmlint", "rpmlint"), ("/usr/bin/python3", "python3"))
    system_python_has("setuptools", "lockfile")
    top = tmp_path_factory.mktemp("rpm")
    src = copy_tree(top)
    sources = top / "rpmbuild" / "SOURCES"
    run([SYSTEM_PYTHON, "setup.py", "-q", "sdist", "-d", str(sources)], cwd=src)
    built = {}
    for variant, args in (("systemd", []), ("sysv", ["--without", "systemd"])):
        topdir = top / "rpmbuild"
        # --nodeps: Debian's rpm database knows no BuildRequires
        run(["rpmbuild", "-bb", "--nodeps", "--define", f"_topdir {topdir}", *args,
             "rpm/xenballoond.spec"], cwd=src)
        [rpm] = (topdir / "RPMS" / "noarch").glob("*.rpm")
        (top / variant).mkdir()
        built[variant] = rpm.rename(top / variant / rpm.name)
    return built


def rpm_query(rpm: Path, *args: str) -> str:
    return run(["rpm", "-qp", *args, str(rpm)], cwd=rpm.parent).stdout


def test_rpm_guest_package(rpms) -> None:
    rpm = rpms["systemd"]
    files = rpm_query(rpm, "-l").split()
    for path in ("/usr/bin/xenballoond", "/etc/sysconfig/xenballoon.conf",
                 "/usr/lib/systemd/system/xenballoond.service",
                 "/usr/share/man/man8/xenballoond.8.gz", "/usr/share/man/man5/xenballoon.conf.5.gz"):
        assert path in files, path
    # guests only: no simulator, no dom0 tools
    assert not any("init.d" in f or "/sim" in f or "/dom0" in f for f in files)
    assert "/usr/bin/xenballoon-monitor" not in files and "/usr/bin/xenballoon-sim" not in files
    flags = rpm_query(rpm, "--qf", "[%{FILENAMES} %{FILEFLAGS:fflags}\n]")
    assert "/etc/sysconfig/xenballoon.conf cn\n" in flags  # %config(noreplace)
    assert rpm_query(rpm, "--qf", "%{VERSION}") == __version__
    requires = rpm_query(rpm, "--requires")
    assert "python3-daemon" in requires and "python3-lockfile" in requires
    scripts = rpm_query(rpm, "--scripts")
    assert ("rm -f /var/run/xenballoon-maxmem /var/run/xenballoon-maxmem.boot "
            "/var/run/xenballoond.pid") in scripts

    sysv = rpm_query(rpms["sysv"], "-l").split()
    assert "/etc/rc.d/init.d/xenballoond" in sysv
    assert not any("systemd" in f for f in sysv)
    assert "chkconfig --add xenballoond" in rpm_query(rpms["sysv"], "--scripts")


def test_rpm_ships_the_tested_unit(rpms) -> None:
    """Issue 22: the RPM's unit is the source tree's, but for the program's path."""
    need(("rpm2cpio", "rpm"), ("cpio", "cpio"))
    rpm = rpms["systemd"]
    cpio = subprocess.run(["rpm2cpio", str(rpm)], capture_output=True, check=True,
                          timeout=120).stdout
    out = subprocess.run(["cpio", "-i", "--quiet", "--to-stdout",
                          "./usr/lib/systemd/system/xenballoond.service"], input=cpio,
                         capture_output=True, check=True, timeout=120).stdout.decode()
    assert out == installed_unit("xenballoond", "/usr/bin")


def test_rpmlint_finds_no_errors(rpms) -> None:
    rc = str(REPO / "rpm" / "built-rpms.rpmlint")
    for rpm in rpms.values():
        r = subprocess.run(["rpmlint", "-r", rc, str(rpm)], capture_output=True, text=True,
                           timeout=300, env=dict(os.environ, PATH=SYSTEM_PATH))
        assert " 0 errors," in r.stdout, r.stdout
    r = subprocess.run(["rpmlint", str(REPO / "rpm" / "xenballoond.spec")], capture_output=True,
                       text=True, timeout=300, env=dict(os.environ, PATH=SYSTEM_PATH))
    assert " 0 errors," in r.stdout, r.stdout
