"""state_dir: every load that succeeds leaves a copy of its inputs there; a start whose data does
not load serves that copy with a loud warning (operator log, /ready text, vpcdns_data_fallback)
until a reload loads the configured data; without a copy such a start still exits 1."""

import http.client
import signal

import vdtest
from vdtest import VPCDNS, addresses, describe

SQS = "sqs.%s.amazonaws.com." % vdtest.REGION


def http_get(port, path):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=3.0)
    try:
        c.request("GET", path)
        r = c.getresponse()
        return r.status, r.read().decode("utf-8", "replace")
    finally:
        c.close()


def metric(body, name):
    for line in body.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def argv_for(snap, zone, state, upstream, metrics_port=None):
    def argv(port):
        a = [VPCDNS, "--listen", "127.0.0.1:%d" % port, "--upstream", upstream]
        a += ["--snapshot", snap, "--zone", zone, "--state-dir", state]
        if metrics_port is not None:
            a += ["--metrics-listen", "127.0.0.1:%d" % metrics_port]
        return a

    return argv


def break_snapshot(snap):
    endpoints = snap / "describe-vpc-endpoints.json"
    good = endpoints.read_text()
    endpoints.write_text(good[:-40])  # a capture cut short
    return good


def test_a_start_saves_the_copy_and_a_broken_start_falls_back(tmp_path, nsd, start_daemon):
    snap, zone = vdtest.copy_reload_data(tmp_path)
    state = tmp_path / "state"
    upstream = "%s:%d" % nsd
    d = start_daemon(upstream, argv=argv_for(snap, zone, state, upstream))
    before = sorted(addresses(d.v4.query(SQS, "A"), SQS))
    assert before, describe(d.v4.query(SQS, "A"))
    assert d.stop() == 0
    last = state / "last-good"
    manifest = (last / "MANIFEST").read_text()
    assert "snapshot 0 %s\n" % snap in manifest and "zone 0 %s\n" % zone in manifest, manifest
    copied = last / "snapshot-0" / "describe-vpc-endpoints.json"
    assert copied.read_text() == (snap / "describe-vpc-endpoints.json").read_text()
    assert (last / "zone-0" / "reload.zone").read_text() == zone.read_text()
    assert not list(state.glob(".staging-*")), list(state.iterdir())

    good = break_snapshot(snap)
    mport = vdtest.free_port(("127.0.0.1",))
    d = start_daemon(upstream, argv=argv_for(snap, zone, state, upstream, mport))
    # the endpoint names of the copy, the zone of the copy, and forwarding all answer
    assert sorted(addresses(d.v4.query(SQS, "A"), SQS)) == before
    msg = d.v4.query("host.reload.example.", "A")
    assert addresses(msg, "host.reload.example.") == ["192.0.2.1"], describe(msg)
    msg = d.v4.query("www.example.com.", "A")
    assert addresses(msg, "www.example.com.") == ["192.0.2.10"], describe(msg)
    log = d.proc.stderr_text()
    assert "level=error event=data_fallback" in log and "describe-vpc-endpoints.json" in log, log
    status, body = http_get(mport, "/ready")
    assert status == 200 and "last-good" in body and "did not load" in body, body
    status, body = http_get(mport, "/metrics")
    assert metric(body, "vpcdns_data_fallback") == 1, body
    # the broken data did not replace the copy
    assert copied.read_text() == good

    # the capture is repaired: a reload loads it and the fallback ends
    (snap / "describe-vpc-endpoints.json").write_text(good)
    d.proc.p.send_signal(signal.SIGHUP)
    assert vdtest.wait_for(lambda: "event=data_fallback_over" in d.proc.stderr_text()), d.proc.stderr_text()
    assert vdtest.wait_for(lambda: metric(http_get(mport, "/metrics")[1], "vpcdns_data_fallback") == 0)
    assert http_get(mport, "/ready") == (200, "OK\n")


def test_a_failed_reload_keeps_the_copy(tmp_path, nsd, start_daemon):
    snap, zone = vdtest.copy_reload_data(tmp_path)
    state = tmp_path / "state"
    upstream = "%s:%d" % nsd
    d = start_daemon(upstream, argv=argv_for(snap, zone, state, upstream))
    copied = state / "last-good" / "snapshot-0" / "describe-vpc-endpoints.json"
    good = copied.read_text()
    break_snapshot(snap)
    d.proc.p.send_signal(signal.SIGHUP)
    assert vdtest.wait_for(lambda: "event=reload_failed" in d.proc.stderr_text()), d.proc.stderr_text()
    assert copied.read_text() == good
    assert not list(state.glob(".staging-*")), list(state.iterdir())


def test_no_copy_or_no_state_dir_exits_1(tmp_path, run_vpcdns):
    snap, zone = vdtest.copy_reload_data(tmp_path)
    break_snapshot(snap)
    port = vdtest.free_port(("127.0.0.1",))
    base = ["--listen", "127.0.0.1:%d" % port, "--upstream", "127.0.0.1:9", "--snapshot", snap]
    res = run_vpcdns(base + ["--state-dir", tmp_path / "empty"])
    assert res.returncode == 1, res.stderr
    assert "describe-vpc-endpoints.json" in res.stderr and "no last-good copy" in res.stderr, res.stderr
    res = run_vpcdns(base)
    assert res.returncode == 1, res.stderr
    assert "last-good" not in res.stderr, res.stderr


def test_check_neither_reads_nor_writes_the_state_dir(tmp_path, run_vpcdns):
    snap, zone = vdtest.copy_reload_data(tmp_path)
    state = tmp_path / "state"
    res = run_vpcdns(["--check", "--upstream", "127.0.0.1:9", "--snapshot", snap, "--state-dir", state])
    assert res.returncode == 0, res.stderr
    assert "state dir: %s (no last-good copy yet)" % state in res.stdout.splitlines(), res.stdout
    assert not state.exists()
