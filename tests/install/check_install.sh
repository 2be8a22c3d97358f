#!/usr/bin/env bash
# tests/install/check_install.sh — what cmake --install puts where, for the prefix the build
# was configured with (ctest runs it as install/destdir; stage package of contrib/test.sh
# covers the .deb on Debian 12). Installs into a temporary DESTDIR and checks: the daemon in
# sbin, the config in SYSCONFDIR/vpcdns with its snapshot and zone paths pointing at the
# installed example data, the man pages in their sections, every contrib unit installed with
# ExecStart naming the installed daemon and config, and that the installed daemon accepts the
# installed config (--check, with the example paths looked up under DESTDIR).
# Usage: check_install.sh BUILD_DIR SOURCE_DIR PREFIX SBINDIR SYSCONFDIR DATADIR UNITDIR
# (the full paths of GNUInstallDirs; UNITDIR relative to PREFIX or absolute).
set -euo pipefail

build=$1 src=$2 prefix=$3 sbindir=$4 sysconfdir=$5 datadir=$6 unitdir=$7
[[ $unitdir == /* ]] || unitdir=$prefix/$unitdir
dest=$(mktemp -d)
trap 'rm -rf "$dest"' EXIT
fail() {
        echo "check_install: FAILED: $*" >&2
        exit 1
}

DESTDIR=$dest cmake --install "$build" >/dev/null

daemon=$sbindir/vpcdns
config=$sysconfdir/vpcdns/vpcdns.yaml
example=$datadir/vpcdns/example
[[ -x $dest$daemon ]] || fail "$daemon is not installed"
[[ -f $dest$config ]] || fail "$config is not installed"
for f in describe-vpc-endpoints.json describe-network-interfaces.json corp.zone vpcdns.yaml; do
        [[ -f $dest$example/$f ]] || fail "$example/$f is not installed"
done
for page in "$src"/man/*.[158]; do
        [[ -e $page ]] || continue
        name=${page##*/}
        [[ -f $dest$prefix/share/man/man${name##*.}/$name ]] ||
                fail "man page $name is not in $prefix/share/man/man${name##*.}"
done
if [[ -f $src/contrib/vpcdns-snapshot ]]; then
        [[ -x $dest$prefix/bin/vpcdns-snapshot ]] || fail "vpcdns-snapshot is not installed"
fi
if [[ -e $dest$prefix/bin/vpcdns-bench ]]; then
        fail "vpcdns-bench is installed: it is a development tool"
fi

grep -qx "  - $example" "$dest$config" ||
        fail "$config does not name the installed example capture $example"
grep -qx "  - $example/corp.zone" "$dest$config" ||
        fail "$config does not name the installed example zone $example/corp.zone"

units=0
for unit in "$src"/contrib/*.service "$src"/contrib/*.socket "$src"/contrib/*.timer; do
        [[ -e $unit ]] || continue
        name=${unit##*/}
        installed=$dest$unitdir/$name
        [[ -f $installed ]] || fail "unit $name is not in $unitdir"
        units=$((units + 1))
done
start=$(sed -n 's/^ExecStart=[-@:+!]*//p' "$dest$unitdir/vpcdns.service" | tail -n 1)
[[ $start == "$daemon --config $config"* ]] ||
        fail "vpcdns.service runs '$start', expected '$daemon --config $config ...'"

# The installed config as the installed daemon reads it, its example paths under DESTDIR.
sed "s|^  - $example|  - $dest$example|" "$dest$config" >"$dest/check.yaml"
out=$("$dest$daemon" --config "$dest/check.yaml" --check) ||
        fail "the installed daemon refuses the installed config: $out"
[[ $(tail -n 1 <<<"$out") == ok ]] || fail "--check of the installed config: $out"
echo "check_install: $daemon, $config, $units units in $unitdir, man pages: ok"
