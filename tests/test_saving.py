"""prepare-save / after-restore (issue 15): dom0 makes a ballooning guest's
memory/target true before xl save or migrate, and lifts the cap after
restore.  Run through the real Xl adapter against a stand-in `xl` script
(a real xl needs a hypervisor) that prints `xl list` and logs its calls."""
from __future__ import annotations

import os
import stat
import subprocess
import sys

from tests.repo import python_env
from xenballoond.dom0.act import Xl
from xenballoond.dom0.guests import Domain
from xenballoond.dom0.saving import after_restore, find_domain, prepare_save, save_target_kb

XL_LIST = """Name                                        ID   Mem VCPUs\tState\tTime(s)
Domain-0                                     0  2048     1     r-----      50.1
guest                                        3   641     1     -b----       9.3
other                                        7   256     1     -b----       1.0
"""


def fake_xl(tmp_path) -> tuple[str, str]:
    log = tmp_path / "xl.log"
    script = tmp_path / "xl"
    (tmp_path / "list.txt").write_text(XL_LIST)
    script.write_text("#!/bin/sh\n"
                      f'echo "$*" >> {log}\n'
                      f'[ "$1" = list ] && exec cat {tmp_path / "list.txt"}\n'
                      "exit 0\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return str(script), str(log)


def test_save_target_covers_what_xl_list_rounds_down() -> None:
    # 641 MiB shown can be up to 641 MiB + 1023 kB held; libxl allows target + 1 MiB
    assert save_target_kb(641 * 1024) == 642 * 1024


def test_find_domain_by_name_or_id_never_domain_0() -> None:
    domains = [Domain(0, "Domain-0", 1), Domain(3, "guest", 2), Domain(12, "3", 4)]
    assert find_domain(domains, "guest") == domains[1]
    assert find_domain(domains, "3") == domains[2]  # a name wins over a domid
    assert find_domain(domains, "12") == domains[2]
    assert find_domain(domains, "0") is None and find_domain(domains, "Domain-0") is None
    assert find_domain(domains, "nope") is None


def test_prepare_save_sets_the_target_to_what_the_guest_holds(tmp_path) -> None:
    xl, log = fake_xl(tmp_path)
    ok, message = prepare_save(Xl(xl, 10), "guest")
    assert ok, message
    assert open(log).read().splitlines() == ["list", f"mem-set 3 {642 * 1024}k"]
    ok, message = prepare_save(Xl(xl, 10), "missing")
    assert not ok and "missing" in message


def test_after_restore_gives_static_max_back(tmp_path) -> None:
    xl, log = fake_xl(tmp_path)
    ok, message = after_restore(Xl(xl, 10), "7", lambda domid: 786432 if domid == 7 else None)
    assert ok, message
    assert open(log).read().splitlines()[-1] == "mem-max 7 786432k"
    ok, message = after_restore(Xl(xl, 10), "guest", lambda domid: None)
    assert not ok and "static-max" in message


def test_the_commands_as_the_admin_runs_them(tmp_path) -> None:
    xl, log = fake_xl(tmp_path)
    conf = tmp_path / "balancer.conf"
    conf.write_text(f"XENBALLOON_BALANCER_XL={xl}\n")
    run = [sys.executable, "-m", "xenballoond.dom0.balancer", "-c", str(conf),
           "--root", str(tmp_path)]
    r = subprocess.run(run + ["prepare-save", "guest"], env=python_env(), capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "memory/target = 657408 kB" in r.stdout
    r = subprocess.run(run + ["prepare-save", "ghost"], env=python_env(), capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 1 and "ghost" in r.stderr
    assert os.path.exists(log)
