#!/bin/sh
#
# Install xenballoond's service files onto a Xen guest, in the distribution's
# places: the SysV init script, the systemd unit and the config file.  The
# Python package (the xenballoond and xenballoon-monitor programs) is pip's
# job: see `make install`.
#
# Usage: scripts/install.sh [install|uninstall]
# Environment (`make install` passes its variables):
#   DESTDIR  stage into this directory (for packaging); default: the system
#   DISTRO   redhat | suse | debian; default: from DESTDIR's /etc, else ours
#   BINDIR   where the xenballoond program is; default /usr/local/bin (pip's)
#   UNITDIR  systemd's unit directory; default /usr/lib/systemd/system
#            (/lib/systemd/system on Debian)
#   PROGRAM  xenballoond (a guest's; default) or xenballoon-balancer (dom0's)
#
# The config is never overwritten: an existing, different one stays and the
# new default goes next to it as xenballoon.conf.new.  Uninstall leaves it too.

set -eu

TOP=$(cd "$(dirname "$0")/.." && pwd)
DESTDIR=${DESTDIR:-}
DESTDIR=${DESTDIR%/}
DISTRO=${DISTRO:-}
BINDIR=${BINDIR:-/usr/local/bin}
UNITDIR=${UNITDIR:-}
ACTION=${1:-install}
PROGRAM=${PROGRAM:-xenballoond}

die() {
    echo "install.sh: $*" >&2
    exit 2
}

# The paths go into sed expressions and the daemon's argument list.
check_word() {
    case $2 in
        *[[:space:]\|\&\\]*) die "$1 must not contain blanks or | & \\: $2" ;;
    esac
}
check_word DESTDIR "$DESTDIR"
check_word BINDIR "$BINDIR"
check_word UNITDIR "$UNITDIR"
case $BINDIR in /*) ;; *) die "BINDIR must be an absolute path: $BINDIR" ;; esac
case $PROGRAM in
    xenballoond) CONFNAME=xenballoon.conf ;;
    xenballoon-balancer) CONFNAME=xenballoon-balancer.conf ;;
    *) die "PROGRAM must be xenballoond or xenballoon-balancer, not: $PROGRAM" ;;
esac

# The distribution of the tree we install into: DESTDIR's /etc if it has one,
# else this system's.
detect_distro() {
    for xb_top in "$DESTDIR" ""; do
        if [ -f "$xb_top/etc/os-release" ]; then
            for xb_id in $(sed -n -e 's/^ID=//p' -e 's/^ID_LIKE=//p' "$xb_top/etc/os-release" |
                           tr -d "\"'"); do
                case $xb_id in
                    rhel | redhat | fedora | centos | rocky | almalinux | ol | amzn)
                        echo redhat; return 0 ;;
                    suse | sles | sled | opensuse | opensuse-*) echo suse; return 0 ;;
                    debian | ubuntu | devuan | raspbian) echo debian; return 0 ;;
                esac
            done
        fi
        if [ -f "$xb_top/etc/redhat-release" ]; then echo redhat; return 0; fi
        if [ -f "$xb_top/etc/SuSE-release" ]; then echo suse; return 0; fi
        if [ -f "$xb_top/etc/debian_version" ]; then echo debian; return 0; fi
        [ -n "$xb_top" ] || break
    done
    return 1
}

if [ -z "$DISTRO" ]; then
    DISTRO=$(detect_distro) || die "cannot tell the distribution: give DISTRO=redhat, suse or debian"
    echo "install.sh: DISTRO=$DISTRO (detected)"
fi
case $DISTRO in
    redhat) INITDIR=/etc/rc.d/init.d CONFDIR=/etc/sysconfig ;;
    suse) INITDIR=/etc/init.d CONFDIR=/etc/sysconfig ;;
    debian) INITDIR=/etc/init.d CONFDIR=/etc/default ;;
    *) die "DISTRO must be redhat, suse or debian, not: $DISTRO" ;;
esac
if [ -z "$UNITDIR" ]; then
    if [ "$DISTRO" = debian ]; then UNITDIR=/lib/systemd/system; else UNITDIR=/usr/lib/systemd/system; fi
fi

INIT=$DESTDIR$INITDIR/$PROGRAM
UNIT=$DESTDIR$UNITDIR/$PROGRAM.service
CONF=$DESTDIR$CONFDIR/$CONFNAME

# install_text MODE DEST: stdin to DEST, replacing it in one step
install_text() {
    mkdir -p "${2%/*}"
    cat >"$2.tmp.$$"
    chmod "$1" "$2.tmp.$$"
    mv -f "$2.tmp.$$" "$2"
    echo "installed $2"
}

do_install() {
    # the program's place first among the ones the script tries
    sed -e "/^xb_candidates=/s|\([\" ]\)$BINDIR/${PROGRAM}[ ]*|\1|" \
        -e "s|^xb_candidates=\"|xb_candidates=\"$BINDIR/$PROGRAM |" \
        -e '/^xb_candidates=/s| *"$|"|' \
        "$TOP/initscripts/$PROGRAM" | install_text 0755 "$INIT"
    sed "s|/usr/local/bin/$PROGRAM|$BINDIR/$PROGRAM|g" \
        "$TOP/initscripts/$PROGRAM.service" | install_text 0644 "$UNIT"

    if [ ! -e "$CONF" ]; then
        install_text 0644 "$CONF" <"$TOP/etc/$CONFNAME"
    elif cmp -s "$TOP/etc/$CONFNAME" "$CONF"; then
        echo "unchanged $CONF"
    else
        install_text 0644 "$CONF.new" <"$TOP/etc/$CONFNAME"
        echo "kept your $CONF; the new default is $CONF.new (diff them and merge by hand)"
    fi

    [ -z "$DESTDIR" ] || return 0
    echo
    echo "To start $PROGRAM at boot, with systemd:"
    echo "  systemctl daemon-reload && systemctl enable --now $PROGRAM"
    echo "or with SysV init:"
    case $DISTRO in
        redhat) echo "  chkconfig --add $PROGRAM && service $PROGRAM start" ;;
        suse) echo "  insserv $PROGRAM && /etc/init.d/$PROGRAM start" ;;
        debian) echo "  update-rc.d $PROGRAM defaults && service $PROGRAM start" ;;
    esac
}

do_uninstall() {
    rm -f "$INIT" "$UNIT"
    echo "removed $INIT $UNIT; left $CONF"
}

case $ACTION in
    install) do_install ;;
    uninstall) do_uninstall ;;
    *) die "usage: $0 [install|uninstall]" ;;
esac
