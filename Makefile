# Install xenballoond onto a Xen guest (see README.md, "Installing on a guest").
#
#   make install [DISTRO=redhat|suse|debian] [DESTDIR=/stage] [PREFIX=/usr/local]
#       the Python package with pip (programs in $(PREFIX)/bin), then the
#       init script, the systemd unit and the config (never overwritten)
#   make install-service [BINDIR=...]
#       only the init script, unit and config: the package is installed
#       otherwise (a venv, pipx, a distribution package)
#   make uninstall-service
#       removes the init script and the unit; leaves the config
#
# DISTRO is detected from DESTDIR's /etc/os-release, else this system's.
# PIP_FLAGS are passed to pip, e.g. --break-system-packages on Debian 12.

PREFIX    ?= /usr/local
BINDIR    ?= $(PREFIX)/bin
DESTDIR   ?=
DISTRO    ?=
UNITDIR   ?=
PYTHON    ?= python3
PIP_FLAGS ?=

export DESTDIR DISTRO BINDIR UNITDIR

.PHONY: install install-python install-service uninstall-service

install: install-python install-service

install-python:
	$(PYTHON) -m pip install $(PIP_FLAGS) $(if $(DESTDIR),--root "$(DESTDIR)") --prefix "$(PREFIX)" .

install-service:
	sh scripts/install.sh install

uninstall-service:
	sh scripts/install.sh uninstall
