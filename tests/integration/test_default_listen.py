"""The default listen addresses (127.0.0.1:53 and [::1]:53, when no listen is given): one that
cannot be bound, such as [::1] where IPv6 is off (a container's default), is skipped with a
warning; the start fails when none binds, and an address the user gave must bind. Each case
runs in a network namespace of its own (unshare), where port 53 is ours and IPv6 can be
turned off without touching the host."""

import shutil
import subprocess

import pytest

import vdtest
from vdtest import SNAPSHOT, VPCDNS

SQS = "sqs.%s.amazonaws.com" % vdtest.REGION

SCRIPT = r"""
set -eu
sysctl -qw net.ipv6.conf.lo.disable_ipv6=1
ip link set lo up
if [ "$LO" = none ]; then
    ip addr del 127.0.0.1/8 dev lo
fi
"$VPCDNS" "$@" 2>"$LOG" &
pid=$!
status=running
for i in $(seq 1 50); do
    if ! kill -0 "$pid" 2>/dev/null; then
        status=exited
        break
    fi
    if dig +short +tries=1 +time=1 @127.0.0.1 "$NAME" A >"$OUT" 2>/dev/null && [ -s "$OUT" ]; then
        break
    fi
    sleep 0.1
done
if [ "$status" = running ]; then
    kill -TERM "$pid"
fi
set +e
wait "$pid"
echo "exit=$?"
"""


def netns_available():
    if shutil.which("unshare") is None or shutil.which("dig") is None or shutil.which("ip") is None:
        return False
    res = subprocess.run(["unshare", "-rn", "true"], capture_output=True)
    return res.returncode == 0


pytestmark = pytest.mark.skipif(not netns_available(), reason="needs unshare -rn, ip and dig")


def run_in_netns(tmp_path, lo, args):
    env = {
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        "VPCDNS": str(VPCDNS),
        "LOG": str(tmp_path / "vpcdns.log"),
        "OUT": str(tmp_path / "dig.out"),
        "NAME": SQS,
        "LO": lo,
    }
    res = subprocess.run(
        ["unshare", "-rn", "sh", "-c", SCRIPT, "sh"] + [str(a) for a in args],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    log = (tmp_path / "vpcdns.log").read_text() if (tmp_path / "vpcdns.log").exists() else ""
    out = (tmp_path / "dig.out").read_text() if (tmp_path / "dig.out").exists() else ""
    return res, log, out


def test_default_ipv6_address_that_cannot_bind_is_skipped(tmp_path):
    res, log, out = run_in_netns(tmp_path, "up", ["--upstream", "127.0.0.1:9", "--snapshot", SNAPSHOT])
    assert "level=warn event=listen_skipped" in log and "[::1]:53" in log, log + res.stderr
    assert out.strip(), "no answer on 127.0.0.1:53\n" + log + res.stderr
    assert "event=start " in log and "listen=127.0.0.1:53 " in log, log  # [::1] not claimed
    assert "exit=0" in res.stdout, res.stdout + log


def test_given_address_that_cannot_bind_fails(tmp_path):
    args = ["--listen", "127.0.0.1:53", "--listen", "[::1]:53", "--upstream", "127.0.0.1:9", "--snapshot", SNAPSHOT]
    res, log, out = run_in_netns(tmp_path, "up", args)
    assert "exit=1" in res.stdout, res.stdout + log
    assert "[::1]:53" in log and "listen_skipped" not in log, log


def test_no_default_address_binds_fails(tmp_path):
    # neither 127.0.0.1 nor ::1 exists in the namespace
    res, log, out = run_in_netns(tmp_path, "none", ["--upstream", "127.0.0.1:9", "--snapshot", SNAPSHOT])
    assert "exit=1" in res.stdout, res.stdout + log
    assert "none of the default listen addresses can be bound" in log, log
