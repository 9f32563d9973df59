"""The one libxenctrl struct read through ctypes (dom0/xenctrl.py): worked by hand from
struct xen_domctl_getdomaininfo in Xen's public/domctl.h (domid_t domain, uint16_t pad1,
uint32_t flags, uint64_t tot_pages, uint64_t max_pages, ...), little-endian x86."""
from __future__ import annotations

import pytest

from xenballoond.dom0.xenctrl import XenCtrl, XenCtrlError, parse_max_kb


def info(domain: int, flags: int, tot_pages: int, max_pages: int) -> bytes:
    return (domain.to_bytes(2, "little") + b"\0\0" + flags.to_bytes(4, "little")
            + tot_pages.to_bytes(8, "little") + max_pages.to_bytes(8, "little")
            + b"\xa5" * 200)


def test_max_pages_in_kb():
    # run 5's incoming domain: 342148 kB target + 1 MiB = 85793 pages
    assert parse_max_kb(info(10, 0, 1000, 85793), 10) == 343172


def test_the_list_starting_at_another_domain_means_no_such_domain():
    """xc_domain_getinfolist(first=d) returns the next domain when d is gone."""
    with pytest.raises(XenCtrlError, match="no domain 10"):
        parse_max_kb(info(11, 0, 1, 2), 10)


def test_no_libxenctrl_is_an_error_that_names_what_was_tried():
    with pytest.raises(XenCtrlError, match="no libxenctrl of a known version"):
        XenCtrl(sonames=("libxenctrl.so.0.does-not-exist",))
