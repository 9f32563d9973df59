"""xenballoond: a Python port of Xen's 2008 in-guest memory ballooning daemon."""

__version__ = "0.1.0"
