# Install xenballoond onto a Xen guest (see docs/installing.md).
#
#   make install [DISTRO=redhat|suse|debian] [DESTDIR=/stage] [PREFIX=/usr/local]
#       the Python package with pip (programs in $(PREFIX)/bin), then the
#       init script, the systemd unit and the config (never overwritten)
#   make install-service [BINDIR=...]
#       only the init script, unit and config: the package is installed
#       otherwise (a venv, pipx, a distribution package)
#   make uninstall-service
#       removes the init script and the unit; leaves the config
#   make man
#       generates the man pages into build/man (from the code: the options
#       and config variables cannot drift); make install installs them
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
MANDIR    ?= $(PREFIX)/share/man

export DESTDIR DISTRO BINDIR UNITDIR

.PHONY: install install-python install-service uninstall-service man install-man

install: install-python install-service install-man

install-python:
	$(PYTHON) -m pip install $(PIP_FLAGS) $(if $(DESTDIR),--root "$(DESTDIR)") --prefix "$(PREFIX)" .

install-service:
	sh scripts/install.sh install

uninstall-service:
	sh scripts/install.sh uninstall

man:
	$(PYTHON) scripts/gen-manpages.py build/man >/dev/null

install-man: man
	install -d "$(DESTDIR)$(MANDIR)/man1" "$(DESTDIR)$(MANDIR)/man5" "$(DESTDIR)$(MANDIR)/man8"
	install -m 0644 build/man/*.1 "$(DESTDIR)$(MANDIR)/man1/"
	install -m 0644 build/man/*.5 "$(DESTDIR)$(MANDIR)/man5/"
	install -m 0644 build/man/*.8 "$(DESTDIR)$(MANDIR)/man8/"
