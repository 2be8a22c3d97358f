"""The file watch (watch: true, the default): a zone file rewritten in place, a new snapshot
directory renamed over the old one and a symlink swap each make exactly one reload within
about a second, and the new answers; a burst of writes makes one reload (the changes settle
for 250 ms first); a broken capture keeps the old answers and shows in the log and the
metrics; the same bytes written again compile nothing (reload_skipped); with watch: false
nothing is reloaded until SIGHUP.

Everything talks to 127.0.0.1 only; every wait is bounded."""

import http.client
import os
import re
import shutil
import signal
import time
from pathlib import Path

import vdtest
from vdtest import addresses, describe

SQS = "sqs.%s.amazonaws.com." % vdtest.REGION
OLD_IP = "10.1.1.10"
NEW_IP = "10.9.9.99"
HOST = "host.reload.example."
RELOAD_EVENTS = ("reload_done", "reload_skipped", "reload_failed")


def events(proc, name, trigger=None):
    """The operator log lines of event name (and trigger, when given)."""
    lines = [line for line in proc.stderr_text(limit=1_000_000).splitlines() if "event=%s " % name in line + " "]
    if trigger is not None:
        lines = [line for line in lines if "trigger=%s" % trigger in line]
    return lines


def reloads(proc, trigger="watch"):
    """How many reloads with trigger ended, however they ended."""
    return sum(len(events(proc, e, trigger)) for e in RELOAD_EVENTS)


def http_metric(port, name):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=3.0)
    try:
        c.request("GET", "/metrics")
        body = c.getresponse().read().decode()
    finally:
        c.close()
    m = re.search(r"^%s (\S+)$" % re.escape(name), body, re.M)
    return float(m.group(1)) if m else None


def start(tmp_path, nsd, start_daemon, snap, zone, extra=()):
    def argv(port):
        return [
            vdtest.VPCDNS,
            "--listen",
            "127.0.0.1:%d" % port,
            "--upstream",
            "%s:%d" % nsd,
            "--snapshot",
            snap,
            "--zone",
            zone,
        ] + list(extra)

    d = start_daemon("%s:%d" % nsd, argv=argv)
    assert vdtest.wait_for(lambda: events(d.proc, "watch_start") or events(d.proc, "watch_off"))
    return d


def expect_one_reload(d, before, done="reload_done", limit=1.5):
    """Exactly one more watch reload, ending in event done, within limit seconds; and no
    other one in the 0.6 s after it."""
    t0 = time.monotonic()
    assert vdtest.wait_for(lambda: reloads(d.proc) > before, limit), d.proc.failure(
        "no reload within %.1f s" % limit
    )
    took = time.monotonic() - t0
    time.sleep(0.6)
    assert reloads(d.proc) == before + 1, d.proc.failure("expected exactly one reload")
    assert events(d.proc, done, "watch"), d.proc.failure("the reload did not end in %s" % done)
    return took


def new_sqs_capture(src, dst):
    """A copy of the snapshot directory src at dst with the first SQS address changed."""
    shutil.copytree(src, dst)
    enis = dst / "describe-network-interfaces.json"
    enis.write_text(enis.read_text().replace('"%s"' % OLD_IP, '"%s"' % NEW_IP))


def test_zone_file_rewritten_in_place(tmp_path, nsd, start_daemon):
    snap, zone = vdtest.copy_reload_data(tmp_path)
    d = start(tmp_path, nsd, start_daemon, snap, zone)
    assert addresses(d.v4.query(HOST, "A"), HOST) == ["192.0.2.1"]
    before = reloads(d.proc)
    with open(zone, "r+") as f:  # the same inode, new content
        text = f.read().replace("192.0.2.1", "192.0.2.77")
        f.seek(0)
        f.write(text)
        f.truncate()
    took = expect_one_reload(d, before)
    assert took < 1.2, "the reload came %.2f s after the write" % took
    msg = d.v4.query(HOST, "A")
    assert addresses(msg, HOST) == ["192.0.2.77"], describe(msg)
    assert any("input=%s" % zone in line for line in events(d.proc, "watch_change"))


def test_new_snapshot_directory_renamed_over_the_old_one(tmp_path, nsd, start_daemon):
    snap, zone = vdtest.copy_reload_data(tmp_path)
    d = start(tmp_path, nsd, start_daemon, snap, zone)
    assert OLD_IP in addresses(d.v4.query(SQS, "A"), SQS)
    for round_ in range(2):  # twice: the watch follows the new directory
        before = reloads(d.proc)
        new = tmp_path / ("snap.new%d" % round_)
        new_sqs_capture(snap, new)
        if round_ == 1:
            enis = new / "describe-network-interfaces.json"
            enis.write_text(enis.read_text().replace('"%s"' % NEW_IP, '"10.9.9.98"'))
        old = tmp_path / ("snap.old%d" % round_)
        os.rename(snap, old)
        os.rename(new, snap)
        shutil.rmtree(old)
        expect_one_reload(d, before)
    msg = d.v4.query(SQS, "A")
    assert "10.9.9.98" in addresses(msg, SQS), describe(msg)


def test_symlink_swap(tmp_path, nsd, start_daemon):
    _, zone = vdtest.copy_reload_data(tmp_path)
    v1 = tmp_path / "capture-1"
    shutil.copytree(vdtest.SNAPSHOT, v1)
    v2 = tmp_path / "capture-2"
    new_sqs_capture(vdtest.SNAPSHOT, v2)
    link = tmp_path / "current"
    link.symlink_to(v1)
    d = start(tmp_path, nsd, start_daemon, link, zone)
    assert OLD_IP in addresses(d.v4.query(SQS, "A"), SQS)
    before = reloads(d.proc)
    tmp_link = tmp_path / "current.tmp"
    tmp_link.symlink_to(v2)
    os.rename(tmp_link, link)  # atomic: ln -s + mv -T
    expect_one_reload(d, before)
    msg = d.v4.query(SQS, "A")
    assert NEW_IP in addresses(msg, SQS) and OLD_IP not in addresses(msg, SQS), describe(msg)


def test_a_burst_of_writes_makes_one_reload(tmp_path, nsd, start_daemon):
    snap, zone = vdtest.copy_reload_data(tmp_path)
    d = start(tmp_path, nsd, start_daemon, snap, zone)
    before = reloads(d.proc)
    base = zone.read_text()
    for i in range(20):
        zone.write_text(base + "burst IN A 192.0.2.%d\n" % (100 + i))
        time.sleep(0.01)
    expect_one_reload(d, before)
    msg = d.v4.query("burst.reload.example.", "A")
    assert addresses(msg, "burst.reload.example.") == ["192.0.2.119"], describe(msg)


def test_broken_capture_keeps_the_old_answers(tmp_path, nsd, start_daemon):
    snap, zone = vdtest.copy_reload_data(tmp_path)
    mport = vdtest.free_port(("127.0.0.1",))
    d = start(tmp_path, nsd, start_daemon, snap, zone, extra=["--metrics-listen", "127.0.0.1:%d" % mport])
    answers = sorted(addresses(d.v4.query(SQS, "A"), SQS))
    assert len(answers) == 3
    assert http_metric(mport, "vpcdns_local_data_reload_failures_total") == 0
    before = reloads(d.proc)
    endpoints = snap / "describe-vpc-endpoints.json"
    endpoints.write_text(endpoints.read_text()[:-40])  # a capture cut short
    expect_one_reload(d, before, done="reload_failed")
    failed = events(d.proc, "reload_failed", "watch")[0]
    assert "kept=previous" in failed and "describe-vpc-endpoints.json" in failed, failed
    assert http_metric(mport, "vpcdns_local_data_reload_failures_total") == 1
    msg = d.v4.query(SQS, "A")
    assert sorted(addresses(msg, SQS)) == answers, describe(msg)
    assert addresses(d.v4.query(HOST, "A"), HOST) == ["192.0.2.1"]


def test_identical_bytes_compile_nothing(tmp_path, nsd, start_daemon):
    snap, zone = vdtest.copy_reload_data(tmp_path)
    mport = vdtest.free_port(("127.0.0.1",))
    d = start(tmp_path, nsd, start_daemon, snap, zone, extra=["--metrics-listen", "127.0.0.1:%d" % mport])
    before = reloads(d.proc)
    copy = tmp_path / "snap.same"
    shutil.copytree(snap, copy)  # a new capture with the same bytes, renamed in
    old = tmp_path / "snap.old"
    os.rename(snap, old)
    os.rename(copy, snap)
    zone.write_text(zone.read_text())  # and a zone file written with what it held
    expect_one_reload(d, before, done="reload_skipped")
    skipped = events(d.proc, "reload_skipped", "watch")
    assert "reason=unchanged" in skipped[0], skipped
    assert not events(d.proc, "reloaded"), d.proc.stderr_text()
    assert http_metric(mport, "vpcdns_local_data_reload_skipped_total") >= 1
    # SIGHUP with nothing changed: skipped the same way
    d.proc.p.send_signal(signal.SIGHUP)
    assert vdtest.wait_for(lambda: events(d.proc, "reload_skipped", "sighup")), d.proc.stderr_text()


def test_watch_false_reloads_only_on_sighup(tmp_path, nsd, start_daemon):
    snap, zone = vdtest.copy_reload_data(tmp_path)
    cfg = tmp_path / "vpcdns.yaml"
    cfg.write_text("watch: false\n")
    d = start(tmp_path, nsd, start_daemon, snap, zone, extra=["--config", cfg])
    assert events(d.proc, "watch_off") and "reason=config" in events(d.proc, "watch_off")[0]
    zone.write_text(zone.read_text().replace("192.0.2.1", "192.0.2.55"))
    time.sleep(1.0)
    assert addresses(d.v4.query(HOST, "A"), HOST) == ["192.0.2.1"]
    assert reloads(d.proc) == 0 and not events(d.proc, "reload_start"), d.proc.stderr_text()
    d.proc.p.send_signal(signal.SIGHUP)
    assert vdtest.wait_for(lambda: addresses(d.v4.query(HOST, "A"), HOST) == ["192.0.2.55"])
    assert len(events(d.proc, "reload_done", "sighup")) == 1


def test_no_watch_flag(tmp_path, nsd, start_daemon):
    snap, zone = vdtest.copy_reload_data(tmp_path)
    d = start(tmp_path, nsd, start_daemon, snap, zone, extra=["--no-watch"])
    assert "reason=config" in events(d.proc, "watch_off")[0]
    r = vdtest.run_vpcdns(["--snapshot", snap, "--zone", zone, "--no-watch", "--check"])
    assert r.returncode == 0, r.stderr
    assert "watch false" in r.stdout, r.stdout
    assert "watch: off (reload with SIGHUP)\n" in r.stdout, r.stdout
    r = vdtest.run_vpcdns(["--snapshot", snap, "--zone", zone, "--check"])
    assert "watch: on (a changed snapshot directory or zone file reloads)\n" in r.stdout, r.stdout


def test_requests_during_a_reload_make_one_more(tmp_path, nsd, start_daemon):
    """SIGHUPs that come while a reload compiles are kept as one request, not one each: the
    reload that follows finds the data it loaded and compiles nothing."""
    snap = tmp_path / "big"
    gen = vdtest.REPO / "bench" / "gen-snapshot.py"
    vdtest.run_binary(Path("/usr/bin/python3"), [gen, snap, "--endpoints", "5000", "--region", vdtest.REGION], 120)
    zone = tmp_path / "reload.zone"
    zone.write_text(vdtest.RELOAD_ZONE)
    d = start(tmp_path, nsd, start_daemon, snap, zone, extra=["--no-watch", "--log-level", "debug"])
    zone.write_text(vdtest.RELOAD_ZONE + "more IN A 192.0.2.3\n")
    for _ in range(5):
        d.proc.p.send_signal(signal.SIGHUP)
        time.sleep(0.005)
    assert vdtest.wait_for(lambda: reloads(d.proc, "sighup") >= 2, 20), d.proc.stderr_text()
    time.sleep(0.5)
    assert events(d.proc, "reload_queued"), d.proc.stderr_text()
    assert len(events(d.proc, "reload_done", "sighup")) == 1, d.proc.stderr_text()
    assert len(events(d.proc, "reload_skipped", "sighup")) == 1, d.proc.stderr_text()
    assert addresses(d.v4.query("more.reload.example.", "A"), "more.reload.example.") == ["192.0.2.3"]
