"""Privileges: started as root with --user, vpcdns binds its sockets and then runs as that
user (uid, gid and groups), keeps answering, and reloads its files as that user. Asked to
switch to a user it cannot become, it refuses to start. Skipped unless run as root."""

import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time

import dns.exception
import dns.rcode
import dns.rdatatype
import pytest

import vdtest
from vdtest import (CORP_ZONE, SNAPSHOT, VPCDNS, Client, addresses, describe, free_port,
                   make_query, rcode)

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="dropping privileges needs root")

SQS = "sqs.eu-west-1.amazonaws.com."
NOBODY = pwd.getpwnam("nobody")


def proc_ids(pid):
    """{'Uid': [real, effective, saved, fs], 'Gid': [...], 'Groups': [...], 'CapEff': int}."""
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("Uid", "Gid", "Groups"):
                out[key] = [int(v) for v in value.split()]
            elif key == "CapEff":
                out[key] = int(value.strip(), 16)
    return out


def closed_upstream():
    """A loopback address where nothing listens: forwarded names fail, never leave the host."""
    return "127.0.0.1:%d" % free_port(("127.0.0.1",))


def public_dir():
    """A directory nobody can read (pytest's tmp_path is private to root)."""
    d = tempfile.mkdtemp(prefix="vd-priv-")
    os.chmod(d, 0o755)
    return d



def test_drops_to_nobody_and_still_answers(start_daemon):
    upstream = closed_upstream()

    def argv(port):
        return [VPCDNS, "--listen", "127.0.0.1:%d" % port, "--listen", "[::1]:%d" % port,
                "--upstream", upstream, "--snapshot", SNAPSHOT, "--zone", CORP_ZONE,
                "--user", "nobody"]

    d = start_daemon(upstream, argv=argv)
    ids = proc_ids(d.proc.p.pid)
    assert ids["Uid"] == [NOBODY.pw_uid] * 4, ids
    assert ids["Gid"] == [NOBODY.pw_gid] * 4, ids
    assert 0 not in ids["Groups"], "root's supplementary groups were kept: %s" % ids
    assert ids["CapEff"] == 0, "capabilities left after the switch: %#x" % ids["CapEff"]

    for client in (d.v4, d.v6):
        msg = client.query(SQS, "A")
        assert addresses(msg, SQS), describe(msg)
        www = client.query("www.corp.example.", "A", tcp=True)
        assert sorted(addresses(www, "www.corp.example.")) == ["10.100.0.10", "10.100.0.11"]
    # ANY at a local name needs no upstream (the upstream here is dead).
    anything = d.v4.query("www.corp.example.", "ANY", tcp=True)
    assert rcode(anything) == dns.rcode.NOERROR, describe(anything)
    assert dns.rdatatype.A in [rr.rdtype for rr in anything.answer], describe(anything)
    assert "privileges" in d.proc.stderr_text() and "uid=%d" % NOBODY.pw_uid in d.proc.stderr_text()
    assert d.stop() == 0, d.proc.failure("SIGTERM after the switch")


def test_reload_reads_files_as_the_new_user(start_daemon):
    work = public_dir()
    try:
        zone = os.path.join(work, "reload.zone")
        with open(zone, "w") as f:
            f.write("$ORIGIN priv.example.\n$TTL 300\n"
                    "@ IN SOA ns hostmaster 1 7200 900 1209600 60\n"
                    "@ IN NS ns\nns IN A 192.0.2.53\nhost IN A 192.0.2.1\n")
        os.chmod(zone, 0o644)
        upstream = closed_upstream()

        def argv(port):
            return [VPCDNS, "--listen", "127.0.0.1:%d" % port, "--upstream", upstream,
                    "--zone", zone, "--user", "nobody"]

        d = start_daemon(upstream, argv=argv, probe="host.priv.example")
        host = "host.priv.example."
        added = "added.priv.example."
        with open(zone, "a") as f:
            f.write("added IN A 192.0.2.2\n")
        d.proc.p.send_signal(signal.SIGHUP)
        assert vdtest.wait_for(lambda: addresses(d.v4.query(added, "A"), added) == ["192.0.2.2"]), \
            d.proc.failure("a file nobody can read was not reloaded")

        # root-only file: the reload, running as nobody, fails and the old data stays.
        os.chmod(zone, 0o600)
        d.proc.p.send_signal(signal.SIGHUP)
        assert vdtest.wait_for(lambda: "Permission denied" in d.proc.stderr_text()), \
            d.proc.failure("expected the reload as nobody to be refused by the file mode")
        assert addresses(d.v4.query(host, "A"), host) == ["192.0.2.1"]
        assert d.proc.alive()
    finally:
        shutil.rmtree(work, ignore_errors=True)


def demote_to_nobody():
    os.setgroups([])
    os.setgid(NOBODY.pw_gid)
    os.setuid(NOBODY.pw_uid)


def serve_args(user):
    port = free_port(("127.0.0.1",))
    return ["--listen", "127.0.0.1:%d" % port, "--upstream", closed_upstream(),
            "--zone", CORP_ZONE, "--user", user]


def test_unknown_user_refuses_to_start(run_vpcdns):
    res = run_vpcdns(serve_args("no-such-user-vd"))
    assert res.returncode == 1, res
    assert "user 'no-such-user-vd': no such user" in res.stderr
    check = run_vpcdns(["--check", "--zone", CORP_ZONE, "--user", "no-such-user-vd"])
    assert check.returncode == 1 and "no such user" in check.stderr, check


def test_switching_to_root_is_refused(run_vpcdns):
    res = run_vpcdns(serve_args("root"))
    assert res.returncode == 1, res
    assert "user 'root' is root" in res.stderr, res.stderr


def test_not_root_and_another_user_is_an_error():
    daemon = pwd.getpwnam("daemon")
    res = subprocess.run([str(VPCDNS)] + serve_args(daemon.pw_name), stdin=subprocess.DEVNULL,
                         capture_output=True, text=True, timeout=10, preexec_fn=demote_to_nobody)
    assert res.returncode == 1, res
    assert "cannot switch to user 'daemon': not started as root (running as uid %d)" % NOBODY.pw_uid \
        in res.stderr, res.stderr


def test_not_root_but_already_that_user_warns_and_runs(tmp_path):
    args = serve_args("nobody")
    port = int(args[1].rsplit(":", 1)[1])
    err = open(tmp_path / "stderr", "wb")
    p = subprocess.Popen([str(VPCDNS)] + args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=err, preexec_fn=demote_to_nobody)
    try:
        client = Client("127.0.0.1", port)
        assert vdtest.wait_for(lambda: p.poll() is None and _answers(client), limit=5.0), \
            (tmp_path / "stderr").read_text()
        assert "already running as user nobody" in (tmp_path / "stderr").read_text()
    finally:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(3)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)
        err.close()
    assert p.returncode == 0


def _answers(client):
    try:
        msg = client.send(make_query("www.corp.example.", "A"), timeout=0.3)
    except (OSError, dns.exception.Timeout):
        return False
    return addresses(msg, "www.corp.example.") != []
