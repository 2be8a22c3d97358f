"""The HTTP endpoint of the real daemon (metrics_listen): GET /metrics in the Prometheus text
format (promtool accepts it; docs/metrics.md lists every family; counters match the queries sent; a real Prometheus server scrapes
and ingests them), /health (503 naming a worker whose loop is blocked, through the debug hook
VPCDNS_DEBUG_STALL_WORKER), /ready (503 then 200 at start; 503 at once on SIGTERM while DNS
answers go on for lameduck_ms; a second SIGTERM stops at once), 404 and 405, --check's lines,
and hostile HTTP clients (huge headers, slowloris, hundreds of connections) that neither crash
the daemon nor delay its DNS answers.

Everything talks to 127.0.0.1 only; every loop and wait is bounded."""

import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.parse
import urllib.request

import pytest

import vdtest
from vdtest import CORP_ZONE, SNAPSHOT, make_query

PROMETHEUS = "/usr/bin/prometheus"
PROMTOOL = "/usr/bin/promtool"


def http_get(port, path, method="GET", timeout=3.0):
    """(status, headers dict, body text) of one request to 127.0.0.1:port."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request(method, path)
        r = c.getresponse()
        return r.status, dict(r.getheaders()), r.read().decode("utf-8", "replace")
    finally:
        c.close()


def metric(body, name):
    """The value of an unlabelled sample name in an exposition body, or None."""
    for line in body.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def start(tmp, nsd, config="", workers=2, name="vpcdns-m"):
    """vpcdns with the HTTP endpoint on a free port: (daemon, http port)."""
    mport = vdtest.free_port(("127.0.0.1",))
    cfg = tmp / (name + ".yaml")
    if "lameduck_ms" not in config:
        config += "lameduck_ms: 0\n"  # stop at once: the fixtures allow 3 s
    cfg.write_text("metrics_listen: 127.0.0.1:%d\n%s" % (mport, config))

    def argv(port):
        return vdtest.vpcdns_argv(
            port, "%s:%d" % nsd, extra=["--config", cfg, "--workers", str(workers)]
        )

    d = vdtest.start_vpcdns(tmp, None, argv=argv, name=name)
    return d, mport


def wait_until(pred, limit, step=0.05):
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(step)
    return pred()


def local_query(d):
    return d.v4.query("www.corp.example", "A")


# ---------------------------------------------------------------------------- /metrics


def test_check_prints_metrics_listen_and_lameduck():
    res = vdtest.run_vpcdns(["--check", "--zone", CORP_ZONE, "--upstream", "127.0.0.1:9",
                             "--metrics-listen", "127.0.0.1:9153"])
    assert res.returncode == 0, res.stderr
    assert "metrics listen: http://127.0.0.1:9153 (/metrics, /health, /ready)\n" in res.stdout
    assert "lameduck: 5000 ms\n" in res.stdout
    res = vdtest.run_vpcdns(["--check", "--zone", CORP_ZONE, "--upstream", "127.0.0.1:9"])
    assert "metrics listen: off\n" in res.stdout


def test_scrape_counts_queries_and_passes_promtool(tmp_path, nsd):
    d, mport = start(tmp_path, nsd)
    try:
        status, headers, body = http_get(mport, "/metrics")
        assert status == 200
        assert headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
        base_q = metric(body, "vpcdns_queries_total")
        base_l = metric(body, "vpcdns_local_answers_total")
        n = 37
        for _ in range(n):
            assert local_query(d).answer
        _, _, body = http_get(mport, "/metrics")
        assert metric(body, "vpcdns_queries_total") == base_q + n
        assert metric(body, "vpcdns_local_answers_total") == base_l + n
        assert 'vpcdns_build_info{version="' in body
        assert 'vpcdns_upstream_server_queries_total{server="127.0.0.1:%d"}' % nsd[1] in body
        assert 'vpcdns_upstream_server_up{server="127.0.0.1:%d"} 1' % nsd[1] in body
        assert metric(body, "vpcdns_local_data_zones") >= 1
        assert metric(body, "vpcdns_local_data_endpoints") > 0
        assert metric(body, "vpcdns_local_data_records") > 0
        assert metric(body, "vpcdns_local_data_reload_failures_total") == 0
        assert abs(metric(body, "vpcdns_local_data_last_load_timestamp_seconds") - time.time()) < 60
        assert 'vpcdns_local_data_file_age_seconds{path="%s"}' % CORP_ZONE in body
        for name in ("process_cpu_seconds_total", "process_resident_memory_bytes",
                     "process_open_fds", "process_max_fds", "process_start_time_seconds"):
            assert metric(body, name) is not None, name
        # forwarded through NSD: counted live, before any stop
        d.v4.query("www.example.com", "A")
        _, _, body = http_get(mport, "/metrics")
        assert metric(body, "vpcdns_upstream_queries_total") >= 1
        assert metric(body, "vpcdns_cache_misses_total") >= 1
        # every family of a scrape is in docs/metrics.md, with its type
        doc = (vdtest.REPO / "docs" / "metrics.md").read_text()
        for line in body.splitlines():
            if line.startswith("# TYPE "):
                _, _, fam, kind = line.split()
                assert "| `%s` | %s |" % (fam, kind) in doc, "docs/metrics.md lacks " + fam
        if os.path.exists(PROMTOOL):
            res = subprocess.run([PROMTOOL, "check", "metrics"], input=body, text=True,
                                 capture_output=True, timeout=30)
            assert res.returncode == 0, res.stdout + res.stderr
        assert http_get(mport, "/nope")[0] == 404
        assert http_get(mport, "/")[0] == 404
        status, headers, _ = http_get(mport, "/metrics", method="POST")
        assert status == 405 and headers.get("Allow") == "GET"
        assert http_get(mport, "/ready", method="DELETE")[0] == 405
    finally:
        assert d.stop() == 0


PROM_CONFIG = """global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: vpcdns
    static_configs:
      - targets: ["127.0.0.1:%d"]
"""


def prom_query(pport, expr):
    url = "http://127.0.0.1:%d/api/v1/query?%s" % (pport, urllib.parse.urlencode({"query": expr}))
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            data = json.loads(r.read())
    except (OSError, ValueError):
        return None
    result = data.get("data", {}).get("result", [])
    return float(result[0]["value"][1]) if result else None


DASHBOARD = vdtest.REPO / "contrib" / "grafana" / "vpcdns-dashboard.json"


def check_dashboard(pport):
    """Every query of the Grafana dashboard is valid PromQL for this Prometheus, names only
    families vpcdns exports (docs/metrics.md, which another test keeps equal to a scrape), and
    returns data from the daemon just scraped (a renamed family would return nothing)."""
    doc = (vdtest.REPO / "docs" / "metrics.md").read_text()
    panels = json.loads(DASHBOARD.read_text())["panels"]
    assert panels
    for panel in panels:
        for target in panel["targets"]:
            expr = target["expr"]
            for name in re.findall(r"\b(vpcdns_[a-z_]+|process_[a-z_]+)", expr):
                family = re.sub(r"_(bucket|sum|count)$", "", name)
                assert "| `%s` |" % family in doc, (panel["title"], name)
            concrete = (expr.replace("$__rate_interval", "1m").replace("$instance", ".*")
                        .replace("$job", ".*"))
            url = "http://127.0.0.1:%d/api/v1/query?%s" % (
                pport, urllib.parse.urlencode({"query": concrete}))
            with urllib.request.urlopen(url, timeout=5) as r:
                data = json.loads(r.read())
            assert data["status"] == "success", (panel["title"], expr, data)
            if "rate(" not in expr and "increase(" not in expr:
                # an instant value of a gauge: the one scrape is enough for data
                assert data["data"]["result"], (panel["title"], expr)


@pytest.mark.skipif(not os.path.exists(PROMETHEUS), reason="no %s (Debian package prometheus)"
                    % PROMETHEUS)
def test_prometheus_ingests_the_counters(tmp_path, nsd):
    d, mport = start(tmp_path, nsd)
    pport = vdtest.free_port(("127.0.0.1",))
    (tmp_path / "prometheus.yml").write_text(PROM_CONFIG % mport)
    prom = vdtest.Proc("prometheus", [
        PROMETHEUS, "--config.file=%s" % (tmp_path / "prometheus.yml"),
        "--storage.tsdb.path=%s" % (tmp_path / "tsdb"),
        "--web.listen-address=127.0.0.1:%d" % pport, "--log.level=warn",
    ], tmp_path)
    try:
        # Prometheus has scraped the daemon before any query: the base value is known.
        base = wait_until(lambda: prom_query(pport, "vpcdns_local_answers_total") is not None, 30,
                          0.2)
        assert base, prom.failure("Prometheus never ingested vpcdns_local_answers_total")
        _, _, body = http_get(mport, "/metrics")
        before = metric(body, "vpcdns_local_answers_total")
        n = 25
        for _ in range(n):
            assert local_query(d).answer
        want = before + n
        got = wait_until(lambda: prom_query(pport, "vpcdns_local_answers_total") == want, 20, 0.2)
        assert got, prom.failure("Prometheus has %s, want %s"
                                 % (prom_query(pport, "vpcdns_local_answers_total"), want))
        assert prom_query(pport, "vpcdns_queries_total") >= want
        assert prom_query(pport, 'up{job="vpcdns"}') == 1
        assert prom_query(pport, "vpcdns_build_info") == 1
        check_dashboard(pport)
    finally:
        prom.stop()
        assert d.stop() == 0


# ---------------------------------------------------------------------------- probes


def test_ready_then_lameduck_on_sigterm(tmp_path, nsd):
    mport = vdtest.free_port(("127.0.0.1",))
    port = vdtest.free_port()
    cfg = tmp_path / "lameduck.yaml"
    cfg.write_text("metrics_listen: 127.0.0.1:%d\nlameduck_ms: 1500\n" % mport)
    argv = vdtest.vpcdns_argv(port, "%s:%d" % nsd, extra=["--config", cfg, "--workers", "2"])
    proc = vdtest.Proc("vpcdns-ready", argv, tmp_path)
    try:
        # Start: every answer of /ready is 503 until it is 200, then stays 200.
        seen = []
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and (not seen or seen[-1] != 200):
            try:
                status, _, body = http_get(mport, "/ready", timeout=1)
                seen.append(status)
                if status == 503:
                    assert body.startswith("starting"), body
            except OSError:
                time.sleep(0.01)
        assert seen and seen[-1] == 200, proc.failure("never ready: %s" % seen)
        assert all(s == 503 for s in seen[:-1]), seen
        client = vdtest.Client("127.0.0.1", port)
        assert client.query("www.corp.example").answer
        assert http_get(mport, "/health")[0] == 200

        # SIGTERM: not ready at once, answers go on for lameduck_ms, then the stop.
        proc.p.send_signal(signal.SIGTERM)
        t0 = time.monotonic()
        status, _, body = wait_until(lambda: (lambda r: r if r[0] == 503 else None)(
            http_get(mport, "/ready")), 0.5, 0.02)
        assert status == 503 and "lameduck" in body
        assert time.monotonic() - t0 < 0.5
        answered = 0
        while time.monotonic() - t0 < 1.2:
            assert client.query("www.corp.example").answer
            answered += 1
            time.sleep(0.05)
        assert proc.alive() and answered > 5
        rc = proc.p.wait(5)
        assert rc == 0
        assert time.monotonic() - t0 >= 1.4
    finally:
        proc.stop()


def test_second_sigterm_during_lameduck_stops_at_once(tmp_path, nsd):
    d, mport = start(tmp_path, nsd, config="lameduck_ms: 60000\n", name="vpcdns-twice")
    d.proc.p.send_signal(signal.SIGTERM)
    assert wait_until(lambda: http_get(mport, "/ready")[0] == 503, 1)
    assert d.v4.query("www.corp.example").answer
    t0 = time.monotonic()
    assert d.stop(signal.SIGTERM, timeout=3) == 0
    assert time.monotonic() - t0 < 3


def test_health_fails_while_a_worker_is_blocked(tmp_path, nsd, monkeypatch):
    # worker 1 blocks its loop for 3.5 s, 1 s after it started (debug hook, tests only)
    monkeypatch.setenv("VPCDNS_DEBUG_STALL_WORKER", "1:1000:3500")
    d, mport = start(tmp_path, nsd, name="vpcdns-stall")
    try:
        assert http_get(mport, "/health")[0] == 200
        found = wait_until(lambda: (lambda r: r if r[0] == 503 else None)(
            http_get(mport, "/health")), 6, 0.1)
        assert found, d.proc.failure("/health never failed")
        assert "worker 1" in found[2], found
        # the loop turns again: healthy again
        assert wait_until(lambda: http_get(mport, "/health")[0] == 200, 6, 0.1)
    finally:
        assert d.stop() == 0


# ---------------------------------------------------------------------------- hostile HTTP


def dns_latency(d, n=20):
    """The slowest of n local queries, in seconds."""
    worst = 0.0
    for _ in range(n):
        t = time.monotonic()
        assert d.v4.query("www.corp.example").answer
        worst = max(worst, time.monotonic() - t)
    return worst


def test_hostile_http_neither_crashes_nor_delays_dns(tmp_path, nsd):
    d, mport = start(tmp_path, nsd, name="vpcdns-hostile")
    socks = []
    try:
        # huge headers: refused by the memory limit, not a crash
        s = socket.create_connection(("127.0.0.1", mport), timeout=3)
        try:
            s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 200000 + b"\r\n\r\n")
        except OSError:
            pass  # the server may close before reading everything
        try:
            reply = s.recv(200)
        except OSError:
            reply = b""
        s.close()
        assert reply == b"" or reply.split(b" ")[1][:1] == b"4", reply
        assert dns_latency(d) < 0.5

        # slowloris and hundreds of connections, held open while DNS is measured
        for i in range(300):
            try:
                c = socket.create_connection(("127.0.0.1", mport), timeout=1)
            except OSError:
                continue
            c.setblocking(False)
            try:
                c.send(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
            except OSError:
                pass
            socks.append(c)
        t_end = time.monotonic() + 2
        worst = 0.0
        while time.monotonic() < t_end:
            for c in socks[:40]:
                try:
                    c.send(b"X: y\r\n")  # a slow header, line by line
                except OSError:
                    pass
            worst = max(worst, dns_latency(d, 5))
        assert worst < 0.5, "a DNS answer took %.3f s during the HTTP attack" % worst
        assert d.proc.alive()
    finally:
        for c in socks:
            c.close()
    try:
        # the endpoint serves again once the attackers are gone (idle timeout, limits)
        assert wait_until(lambda: _ok(mport), 10, 0.2), d.proc.failure("/metrics never served again")
    finally:
        assert d.stop() == 0


def _ok(port):
    try:
        return http_get(port, "/metrics", timeout=1)[0] == 200
    except OSError:
        return False


def test_reloads_are_reported(tmp_path, nsd):
    zone = tmp_path / "corp.zone"
    zone.write_text(CORP_ZONE.read_text())
    mport = vdtest.free_port(("127.0.0.1",))
    cfg = tmp_path / "reload.yaml"
    cfg.write_text("metrics_listen: 127.0.0.1:%d\nlameduck_ms: 0\n" % mport)

    def argv(port):
        return vdtest.vpcdns_argv(port, "%s:%d" % nsd, zone=zone, extra=["--config", cfg])

    d = vdtest.start_vpcdns(tmp_path, None, argv=argv, name="vpcdns-reload")
    try:
        _, _, body = http_get(mport, "/metrics")
        loaded = metric(body, "vpcdns_local_data_last_load_timestamp_seconds")
        records = metric(body, "vpcdns_local_data_records")
        time.sleep(1.1)  # the timestamp has a resolution of a second
        zone.write_text(CORP_ZONE.read_text() + "extra 300 IN A 10.100.9.9\n")
        d.proc.p.send_signal(signal.SIGHUP)
        assert wait_until(lambda: metric(http_get(mport, "/metrics")[2],
                                         "vpcdns_local_data_records") == records + 1, 5)
        _, _, body = http_get(mport, "/metrics")
        assert metric(body, "vpcdns_local_data_last_load_timestamp_seconds") > loaded
        assert metric(body, "vpcdns_local_data_reload_failures_total") == 0
        zone.write_text("this is not a zone file\n")
        d.proc.p.send_signal(signal.SIGHUP)
        assert wait_until(lambda: metric(http_get(mport, "/metrics")[2],
                                         "vpcdns_local_data_reload_failures_total") == 1, 5)
        assert metric(http_get(mport, "/metrics")[2], "vpcdns_local_data_records") == records + 1
    finally:
        assert d.stop() == 0
