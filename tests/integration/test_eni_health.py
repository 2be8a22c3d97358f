"""eni_health: the real daemon probes the ENI addresses of tests/data/integ/eni-health (all in
127.0.90.0/24) at a port where Python listeners stand in for the ENIs. A stopped listener's
address leaves the answers within fall x interval_ms (plus a margin for loaded CI machines and
the valgrind/ASan stages) and comes back within rise x interval_ms of its restart; with every
ENI of an endpoint down all are answered (fail open) and logged; a reload with a changed
snapshot keeps the state of the ENIs that remain; a reload applies new probe settings, while
turning probing off needs a restart. Every wait is bounded."""

import json
import selectors
import shutil
import signal
import socket
import threading
import time
import urllib.request

import vdtest
from vdtest import DATA, VPCDNS, addresses, describe

SQS = "sqs.eu-west-1.amazonaws.com."
SNS = "vpce-0293a4b5c6d7e8f90-z1x2c3v4.sns.eu-west-1.vpce.amazonaws.com."
SQS_IPS = ["127.0.90.1", "127.0.90.2", "127.0.90.3"]
SNS_IP = "127.0.90.4"
INTERVAL_MS = 200
FALL = 2
RISE = 2
# Room for a loaded CI machine and the valgrind stage on top of fall/rise x interval.
MARGIN_S = 8.0


class Listeners:
    """TCP listeners on ip:port for each ENI address, accepting (and closing) every
    connection on one thread, so that probes never fill an accept queue."""

    def __init__(self, ips, port):
        self.port = port
        self.socks = {}
        self.sel = selectors.DefaultSelector()
        self.lock = threading.Lock()
        self.done = threading.Event()
        for ip in ips:
            self.start(ip)
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def start(self, ip):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((ip, self.port))
        s.listen(64)
        s.setblocking(False)
        with self.lock:
            self.socks[ip] = s
            self.sel.register(s, selectors.EVENT_READ)

    def stop(self, ip):
        with self.lock:
            s = self.socks.pop(ip)
            self.sel.unregister(s)
        s.close()

    def run(self):
        while not self.done.is_set():
            with self.lock:
                ready = self.sel.select(timeout=0.05) if self.socks else []
            for key, _ in ready:
                try:
                    conn, _ = key.fileobj.accept()
                    conn.close()
                except OSError:
                    pass
            if not ready:
                time.sleep(0.01)

    def close(self):
        self.done.set()
        self.thread.join(timeout=5)
        for ip in list(self.socks):
            self.stop(ip)


def free_port_on(ips):
    """A TCP port free on every one of ips (bounded tries)."""
    for _ in range(50):
        port = vdtest.free_port(("127.0.0.1",))
        ok = True
        for ip in ips:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                s.bind((ip, port))
            except OSError:
                ok = False
            finally:
                s.close()
        if ok:
            return port
    raise RuntimeError("no port free on every ENI address")


def start(tmp_path, nsd, start_daemon, metrics_port=None, extra=""):
    snap = tmp_path / "snap"
    shutil.copytree(DATA / "eni-health", snap)
    port = free_port_on(SQS_IPS + [SNS_IP])
    listeners = Listeners(SQS_IPS + [SNS_IP], port)
    conf = tmp_path / "vpcdns.yaml"
    text = (
        "snapshot: %s\n"
        "eni_health: {port: %d, interval_ms: %d, timeout_ms: 190, fall: %d, rise: %d}\n"
        % (snap, port, INTERVAL_MS, FALL, RISE)
    )
    text += extra
    if metrics_port is not None:
        text += "metrics_listen: 127.0.0.1:%d\nlameduck_ms: 0\n" % metrics_port
    conf.write_text(text)

    def argv(dns_port):
        return [
            VPCDNS,
            "--config",
            conf,
            "--listen",
            "127.0.0.1:%d" % dns_port,
            "--upstream",
            "%s:%d" % nsd,
        ]

    d = start_daemon("%s:%d" % nsd, argv=argv, probe=SQS)
    return d, listeners, snap


def answer(d, name=SQS):
    return sorted(addresses(d.v4.query(name, "A"), name))


def wait_answer(d, want, limit, name=SQS):
    """Seconds until the answer for name is exactly want (sorted), at most limit."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit:
        if answer(d, name) == sorted(want):
            return time.monotonic() - t0
        time.sleep(0.02)
    raise AssertionError("%s: not %s within %.1f s: %s" % (name, want, limit,
                                                          describe(d.v4.query(name, "A"))))


def test_stopped_eni_leaves_and_returns(tmp_path, nsd, start_daemon):
    d, listeners, _ = start(tmp_path, nsd, start_daemon)
    try:
        assert vdtest.wait_for(lambda: "event=eni_health_start" in d.proc.stderr_text())
        log = d.proc.stderr_text()
        assert "addresses=4 endpoints=2" in log, log
        assert answer(d) == SQS_IPS

        listeners.stop(SQS_IPS[0])
        took = wait_answer(d, SQS_IPS[1:], FALL * INTERVAL_MS / 1000 + MARGIN_S)
        print("down: left the answers after %.2f s (fall x interval = %.2f s)"
              % (took, FALL * INTERVAL_MS / 1000))
        # stays out while down (no flapping), every name of the endpoint alike
        for _ in range(5):
            assert answer(d) == SQS_IPS[1:]
            time.sleep(INTERVAL_MS / 1000 / 2)
        zonal = "vpce-0a1b2c3d4e5f60718-k2j4h6g8.sqs.eu-west-1.vpce.amazonaws.com."
        assert answer(d, zonal) == SQS_IPS[1:]
        log = d.proc.stderr_text()
        assert ("event=eni_down endpoint=vpce-0a1b2c3d4e5f60718 eni=eni-01a2b3c4d5e6f7081 "
                "az=eu-west-1a address=127.0.90.1 reason=refused") in log, log

        listeners.start(SQS_IPS[0])
        took = wait_answer(d, SQS_IPS, RISE * INTERVAL_MS / 1000 + MARGIN_S)
        print("up: back in the answers after %.2f s (rise x interval = %.2f s)"
              % (took, RISE * INTERVAL_MS / 1000))
        assert "event=eni_up endpoint=vpce-0a1b2c3d4e5f60718" in d.proc.stderr_text()
        assert answer(d, SNS) == [SNS_IP]
    finally:
        listeners.close()
    assert d.stop() == 0, d.proc.stderr_text()


def test_every_eni_down_fails_open_and_says_so(tmp_path, nsd, start_daemon):
    mport = vdtest.free_port(("127.0.0.1",))
    d, listeners, _ = start(tmp_path, nsd, start_daemon, metrics_port=mport)
    try:
        for ip in SQS_IPS:
            listeners.stop(ip)
        limit = FALL * INTERVAL_MS / 1000 + MARGIN_S
        assert vdtest.wait_for(lambda: "event=eni_fail_open endpoint=vpce-0a1b2c3d4e5f60718"
                               in d.proc.stderr_text(), limit), d.proc.stderr_text()
        # every ENI down: all of them answered, not an empty answer
        for _ in range(5):
            assert answer(d) == SQS_IPS
            time.sleep(0.05)
        assert answer(d, SNS) == [SNS_IP]
        assert d.proc.stderr_text().count("event=eni_fail_open endpoint=") == 1

        with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % mport, timeout=5) as r:
            body = r.read().decode()
        assert 'vpcdns_eni_fail_open_total{endpoint="vpce-0a1b2c3d4e5f60718"} 1' in body, body
        assert "vpcdns_eni_failing_open 1" in body
        assert ('vpcdns_eni_up{endpoint="vpce-0a1b2c3d4e5f60718",eni="eni-01a2b3c4d5e6f7081",'
                'az="eu-west-1a",address="127.0.90.1"} 0') in body
        assert ('vpcdns_eni_up{endpoint="vpce-0293a4b5c6d7e8f90",eni="eni-0923a4b5c6d7e8f90",'
                'az="eu-west-1a",address="127.0.90.4"} 1') in body
        doc = (vdtest.REPO / "docs" / "metrics.md").read_text()
        families = [line.split()[2:4] for line in body.splitlines()
                    if line.startswith("# TYPE vpcdns_eni_")]
        assert len(families) == 4, families
        for fam, kind in families:
            assert "| `%s` | %s |" % (fam, kind) in doc, "docs/metrics.md lacks " + fam

        # one comes back: the fail-open ends and only that one is answered
        listeners.start(SQS_IPS[2])
        wait_answer(d, [SQS_IPS[2]], RISE * INTERVAL_MS / 1000 + MARGIN_S)
        assert "event=eni_fail_open_end endpoint=vpce-0a1b2c3d4e5f60718" in d.proc.stderr_text()
    finally:
        listeners.close()
    assert d.stop() == 0, d.proc.stderr_text()


def test_reload_keeps_the_state_of_remaining_enis(tmp_path, nsd, start_daemon):
    d, listeners, snap = start(tmp_path, nsd, start_daemon)
    try:
        listeners.stop(SQS_IPS[1])
        wait_answer(d, [SQS_IPS[0], SQS_IPS[2]], FALL * INTERVAL_MS / 1000 + MARGIN_S)

        # the reload drops the third ENI of the endpoint; the second (down) stays
        eps = snap / "describe-vpc-endpoints.json"
        data = json.loads(eps.read_text())
        sqs = [e for e in data["VpcEndpoints"] if e["ServiceName"].endswith(".sqs")][0]
        sqs["NetworkInterfaceIds"].remove("eni-01a2b3c4d5e6f7083")
        sqs["DnsEntries"] = [e for e in sqs["DnsEntries"] if "eu-west-1c" not in e["DnsName"]]
        eps.write_text(json.dumps(data, indent=4))
        before = d.proc.stderr_text().count("event=reload_done")
        d.proc.p.send_signal(signal.SIGHUP)
        assert vdtest.wait_for(
            lambda: d.proc.stderr_text().count("event=reload_done") > before, 10.0
        ), d.proc.stderr_text()
        # at once, and from then on: the down ENI is still out, without probing it again
        for _ in range(5):
            assert answer(d) == [SQS_IPS[0]], describe(d.v4.query(SQS, "A"))
            time.sleep(0.05)
        log = d.proc.stderr_text()
        assert "event=eni_health_targets addresses=3 kept=3 added=0 removed=1" in log, log
        assert log.count("address=127.0.90.2 reason=refused") == 1, log
        assert "event=eni_up endpoint=vpce-0a1b2c3d4e5f60718 eni=eni-01a2b3c4d5e6f7082" not in log

        listeners.start(SQS_IPS[1])
        wait_answer(d, SQS_IPS[:2], RISE * INTERVAL_MS / 1000 + MARGIN_S)
    finally:
        listeners.close()
    assert d.stop() == 0, d.proc.stderr_text()


def test_check_prints_and_validates_eni_health(tmp_path, run_vpcdns):
    conf = tmp_path / "vpcdns.yaml"
    conf.write_text("listen: 127.0.0.1:5399\nupstream: 127.0.0.1\n"
                    "eni_health: {port: 443, interval_ms: 1000, timeout_ms: 2000}\n")
    res = run_vpcdns(["--check", "--config", conf])
    assert res.returncode != 0
    assert "vpcdns.yaml:3:" in res.stderr and "timeout_ms" in res.stderr, res.stderr
    conf.write_text("listen: 127.0.0.1:5399\nupstream: 127.0.0.1\n"
                    "eni_health: {interval_ms: 1000}\n")
    res = run_vpcdns(["--check", "--config", conf])
    assert res.returncode == 0, res.stderr
    out = res.stdout + res.stderr
    assert "port=443 interval_ms=1000 timeout_ms=1000 fall=2 rise=2" in out, out


def test_reload_applies_new_settings_and_on_off_needs_a_restart(tmp_path, nsd, start_daemon):
    d, listeners, snap = start(tmp_path, nsd, start_daemon)
    conf = tmp_path / "vpcdns.yaml"
    try:
        def reload(text):
            before = d.proc.stderr_text().count("event=reloaded")
            conf.write_text(text)
            d.proc.p.send_signal(signal.SIGHUP)
            assert vdtest.wait_for(
                lambda: d.proc.stderr_text().count("event=reloaded") > before, 10.0
            ), d.proc.stderr_text()

        # fall 2 -> 4, live: the next ENI to stop goes down after 4 failures
        reload(conf.read_text().replace("fall: %d" % FALL, "fall: 4"))
        log = d.proc.stderr_text()
        assert "config=eni_health" in log, log
        assert "reload_needs_restart key=eni_health" not in log, log
        listeners.stop(SQS_IPS[0])
        wait_answer(d, SQS_IPS[1:], 4 * INTERVAL_MS / 1000 + MARGIN_S)
        assert "address=127.0.90.1 reason=refused in_row=4" in d.proc.stderr_text()

        # off needs a restart: the prober goes on, the down ENI stays out
        reload("snapshot: %s\n" % snap)
        assert "reload_needs_restart key=eni_health" in d.proc.stderr_text()
        listeners.stop(SQS_IPS[1])
        wait_answer(d, [SQS_IPS[2]], 4 * INTERVAL_MS / 1000 + MARGIN_S)
    finally:
        listeners.close()
    assert d.stop() == 0, d.proc.stderr_text()


def test_views_probe_the_enis_of_every_view(tmp_path, nsd, start_daemon):
    """With views the endpoints live in the views' data, not the root's: the prober must
    follow them there, and a down ENI leaves the answers of the view that serves it."""
    views = ("views:\n"
             "  - {name: app, clients: [127.0.0.0/8], vpc: vpc-0e1d2c3b4a5968778}\n")
    d, listeners, _ = start(tmp_path, nsd, start_daemon, extra=views)
    try:
        assert vdtest.wait_for(lambda: "event=eni_health_start" in d.proc.stderr_text())
        assert "addresses=4 endpoints=2" in d.proc.stderr_text(), d.proc.stderr_text()
        assert answer(d) == SQS_IPS
        listeners.stop(SQS_IPS[1])
        wait_answer(d, [SQS_IPS[0], SQS_IPS[2]], FALL * INTERVAL_MS / 1000 + MARGIN_S)
        listeners.start(SQS_IPS[1])
        wait_answer(d, SQS_IPS, RISE * INTERVAL_MS / 1000 + MARGIN_S)
    finally:
        listeners.close()
    assert d.stop() == 0, d.proc.stderr_text()
