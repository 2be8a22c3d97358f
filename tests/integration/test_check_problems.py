"""--check says what would go wrong in service instead of "ok": a forward rule that hides local
names (a warning naming the rule and one name; an error when the rules hide every local name),
no usable upstream (an error), and data files the configured user cannot read (an error naming
the file: the first reload, which runs as that user, would fail)."""

import os
import shutil
import tempfile
from pathlib import Path

import pytest

import vdtest
from vdtest import CORP_ZONE, SNAPSHOT

SQS = "sqs.%s.amazonaws.com" % vdtest.REGION


def output(res):
    return "exit %d\n--- stdout ---\n%s\n--- stderr ---\n%s" % (res.returncode, res.stdout, res.stderr)


def write_config(tmp_path, text):
    c = tmp_path / "vpcdns.yaml"
    c.write_text(text)
    return c


def test_rule_hiding_some_local_names_warns(run_vpcdns, tmp_path):
    c = write_config(tmp_path, "forward:\n  - {domain: amazonaws.com, servers: [127.0.0.1:9]}\n")
    res = run_vpcdns(["--check", "--config", c, "--upstream", "127.0.0.1:9", "--snapshot", SNAPSHOT,
                      "--zone", CORP_ZONE])
    assert res.returncode == 0, output(res)  # the zone's names are still answered locally
    assert res.stdout.splitlines()[-1] == "ok", output(res)
    warning = [line for line in res.stderr.splitlines() if "forward rule 'amazonaws.com.'" in line]
    assert warning and "warning" in warning[0] and "hides" in warning[0], output(res)
    assert ".amazonaws.com." in warning[0].split("e.g. ", 1)[1], output(res)


def test_rule_hiding_nothing_is_quiet(run_vpcdns, tmp_path):
    c = write_config(tmp_path, "forward:\n  - {domain: example.org, servers: [127.0.0.1:9]}\n")
    res = run_vpcdns(["--check", "--config", c, "--upstream", "127.0.0.1:9", "--snapshot", SNAPSHOT])
    assert res.returncode == 0, output(res)
    assert "warning" not in res.stderr, output(res)


def test_rules_hiding_every_local_name_fail(run_vpcdns, tmp_path):
    c = write_config(
        tmp_path,
        "forward:\n  - {domain: amazonaws.com, servers: [127.0.0.1:9]}\n"
        "  - {domain: corp.example, servers: default}\n"
        "  - {domain: partner.example, servers: default}\n",  # an endpoint service's own name
    )
    res = run_vpcdns(["--check", "--config", c, "--upstream", "127.0.0.1:9", "--snapshot", SNAPSHOT,
                      "--zone", CORP_ZONE])
    assert res.returncode == 1, output(res)
    assert "hide every one of the" in res.stderr and "ok" not in res.stdout.splitlines(), output(res)


def resolv_conf_nameservers():
    out = []
    try:
        for line in Path("/etc/resolv.conf").read_text().splitlines():
            parts = line.split()
            if len(parts) >= 2 and parts[0] == "nameserver":
                out.append(parts[1])
    except OSError:
        pass
    return out


def test_no_usable_upstream_fails(run_vpcdns):
    # resolv.conf's nameservers become our own listen addresses (--check binds nothing), so the
    # default upstreams are all "vpcdns itself" and none is left
    listen = []
    for ns in resolv_conf_nameservers()[:15]:
        listen += ["--listen", ("[%s]:53" if ":" in ns else "%s:53") % ns]
    res = run_vpcdns(["--check", "--listen", "127.0.0.1:5300"] + listen + ["--snapshot", SNAPSHOT])
    assert res.returncode == 1, output(res)
    assert "no usable upstream" in res.stderr, output(res)
    # a forward rule with servers of its own is somewhere to go: a warning only
    res = run_vpcdns(
        ["--check", "--listen", "127.0.0.1:5300"]
        + listen
        + ["--snapshot", SNAPSHOT, "--config", write_config(Path(tempfile.mkdtemp()), "forward:\n"
           "  - {domain: corp.example, servers: [127.0.0.1:9]}\n")]
    )
    assert res.returncode == 0, output(res)
    assert "warning: no upstream" in res.stderr, output(res)


@pytest.fixture
def public_dir():
    """A directory every user may reach (pytest's tmp_path is private to root)."""
    d = Path(tempfile.mkdtemp(prefix="vd-check-", dir="/tmp"))
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d)


def user_check(run_vpcdns, snap, zone):
    return run_vpcdns(["--check", "--user", "nobody", "--upstream", "127.0.0.1:9", "--snapshot", snap,
                       "--zone", zone])


def test_files_the_user_cannot_read_fail(run_vpcdns, public_dir):
    snap = public_dir / "snap"
    shutil.copytree(SNAPSHOT, snap)
    zone = public_dir / "corp.zone"
    shutil.copy(CORP_ZONE, zone)
    for p in [snap, *snap.iterdir()]:
        os.chmod(p, 0o755 if p.is_dir() else 0o644)
    os.chmod(zone, 0o644)
    res = user_check(run_vpcdns, snap, zone)
    assert res.returncode == 0, output(res)
    assert "warning" not in res.stderr, output(res)

    # a state_dir the user cannot write: the copy would not be saved (a warning)
    state = public_dir / "state"
    state.mkdir(mode=0o755)
    res = run_vpcdns(["--check", "--user", "nobody", "--upstream", "127.0.0.1:9", "--snapshot", snap,
                      "--state-dir", state])
    assert res.returncode == 0, output(res)
    assert "warning: state_dir %s: user 'nobody' cannot write it" % state in res.stderr, output(res)

    enis = snap / "describe-network-interfaces.json"
    os.chmod(enis, 0o600)  # owned by us, not by nobody
    res = user_check(run_vpcdns, snap, zone)
    assert res.returncode == 1, output(res)
    assert str(enis) in res.stderr and "user 'nobody' cannot read it" in res.stderr, output(res)
    os.chmod(enis, 0o644)

    os.chmod(snap, 0o750)  # the directory: no search for others
    res = user_check(run_vpcdns, snap, zone)
    assert res.returncode == 1, output(res)
    assert "user 'nobody'" in res.stderr and str(snap) in res.stderr, output(res)
    os.chmod(snap, 0o755)

    os.chmod(zone, 0o640)
    res = user_check(run_vpcdns, snap, zone)
    assert res.returncode == 1, output(res)
    assert str(zone) in res.stderr, output(res)
    os.chmod(zone, 0o644)

    # the config file: a reload reads it again, as the user
    cfg = public_dir / "vpcdns.yaml"
    cfg.write_text("workers: 1\n")
    os.chmod(cfg, 0o600)
    res = run_vpcdns(["--check", "--config", cfg, "--user", "nobody", "--upstream", "127.0.0.1:9",
                      "--snapshot", snap])
    assert res.returncode == 1, output(res)
    assert str(cfg) in res.stderr and "cannot read it" in res.stderr, output(res)
