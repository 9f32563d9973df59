"""One call of libxenctrl through ctypes: a domain's hypervisor memory limit.

``xl mem-max`` goes through libxl, which locks the domain's userdata and reads
its stored config: neither exists yet for a domain that ``xl
migrate-receive`` is still building, which is exactly when its limit matters
(the incoming domain is built with the saved ``memory/target`` +
1 MiB, and a self-ballooning guest that grows during the pre-copy is refused
its pages there: "Over-allocation").  ``xc_domain_setmaxmem`` is the call
libxl itself ends in.  Xen's Python bindings are not packaged by Debian;
libxenctrl's soname carries the Xen version (libxenctrl.so.4.17), and only
the versions named here are used.
"""
from __future__ import annotations

import ctypes
import os
import struct
from typing import Optional

SONAMES = ("libxenctrl.so.4.17",)
# struct xen_domctl_getdomaininfo (public/domctl.h), stable since Xen 4.1: domid_t
# domain, uint16_t pad1, uint32_t flags, uint64_t tot_pages, uint64_t max_pages, ...;
# the buffer is larger than the whole struct on any version
INFO = struct.Struct("<HHIQQ")
INFO_BUFFER_BYTES = 4096
PAGE_KB = 4


class XenCtrlError(OSError):
    pass


def parse_max_kb(info: bytes, domid: int) -> int:
    """max_pages of ``domid`` in kB, from the first xc_domaininfo_t in ``info``."""
    domain, _pad, _flags, _tot_pages, max_pages = INFO.unpack_from(info)
    if domain != domid:  # no such domain: the list starts at the next one
        raise XenCtrlError(0, f"no domain {domid}")
    return int(max_pages) * PAGE_KB


class XenCtrl:
    def __init__(self, sonames: tuple[str, ...] = SONAMES) -> None:
        lib = None
        errors = []
        for name in sonames:
            try:
                lib = ctypes.CDLL(name, use_errno=True)
                break
            except OSError as exc:
                errors.append(str(exc))
        if lib is None:
            raise XenCtrlError(0, "no libxenctrl of a known version (" + "; ".join(errors) + ")")
        lib.xc_interface_open.restype = ctypes.c_void_p
        lib.xc_interface_open.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint]
        lib.xc_interface_close.argtypes = [ctypes.c_void_p]
        lib.xc_domain_setmaxmem.restype = ctypes.c_int
        lib.xc_domain_setmaxmem.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_uint64]
        lib.xc_domain_getinfolist.restype = ctypes.c_int
        lib.xc_domain_getinfolist.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_uint,
                                              ctypes.c_void_p]
        self._lib = lib
        self._xch: Optional[int] = lib.xc_interface_open(None, None, 0)
        if not self._xch:
            err = ctypes.get_errno()
            raise XenCtrlError(err, f"xc_interface_open: {os.strerror(err)}")

    def set_max_kb(self, domid: int, max_kb: int) -> None:
        """The domain's limit in the hypervisor, as xc_domain_setmaxmem takes it (kB)."""
        if self._xch is None:
            raise XenCtrlError(0, "closed")
        if self._lib.xc_domain_setmaxmem(self._xch, domid, max_kb) != 0:
            err = ctypes.get_errno()
            raise XenCtrlError(err, f"xc_domain_setmaxmem(d{domid}, {max_kb} kB): "
                                    f"{os.strerror(err)}")

    def max_kb(self, domid: int) -> int:
        """The domain's limit in the hypervisor (kB), from xc_domain_getinfolist."""
        if self._xch is None:
            raise XenCtrlError(0, "closed")
        buf = ctypes.create_string_buffer(INFO_BUFFER_BYTES)
        n = self._lib.xc_domain_getinfolist(self._xch, domid, 1, buf)
        if n < 0:
            err = ctypes.get_errno()
            raise XenCtrlError(err, f"xc_domain_getinfolist(d{domid}): {os.strerror(err)}")
        return parse_max_kb(buf.raw, domid)

    def close(self) -> None:
        if self._xch is not None:
            self._lib.xc_interface_close(self._xch)
            self._xch = None
