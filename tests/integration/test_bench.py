"""vpcdns-bench, the load generator, against the daemon of the suite: short bounded runs
(-n or -l under a second), judged on the JSON report; plus its errors and a silent server."""

import json
import os
import socket
from pathlib import Path

import pytest

import vdtest
from vdtest import SNAPSHOT, VPCDNS

BENCH = Path(os.environ.get("VPCDNS_BENCH_BIN", VPCDNS.parent / "vpcdns-bench"))

# Local data of tests/data/integ: round-robin, so every 5th query is the NXDOMAIN one.
LOCAL = """# local names: zone file and endpoint names
www.corp.example A
corp.example MX   
notes.corp.example TXT

sqs.eu-west-1.amazonaws.com A
nope.corp.example A
"""


def run_bench(args, timeout=30.0):
    return vdtest.run_binary(BENCH, args, timeout)


def output(res):
    return "exit %d\n--- stdout ---\n%s\n--- stderr ---\n%s" % (res.returncode, res.stdout, res.stderr)


@pytest.fixture
def local_data(tmp_path):
    path = tmp_path / "local.txt"
    path.write_text(LOCAL)
    return path


def bench_json(args, expect_status=0):
    res = run_bench(list(args) + ["--json", "-", "-q"])
    assert res.returncode == expect_status, output(res)
    return json.loads(res.stdout), res


def check_latency_ordered(report):
    lat = report["latency_us"]
    keys = ("min", "p50", "p90", "p99", "p99_9", "max")
    values = [lat[k] for k in keys]
    assert all(v is not None for v in values), report
    assert values == sorted(values), "percentiles out of order: %s" % lat
    assert 0 < lat["min"] and lat["max"] < 2e6, lat
    assert lat["min"] <= lat["mean"] <= lat["max"], lat


def test_help_lists_the_options():
    res = run_bench(["--help"])
    assert res.returncode == 0, output(res)
    for flag in ("--server", "--data", "--snapshot", "--rate", "--outstanding", "--duration",
                 "--warmup", "--max-queries", "--timeout", "--sockets", "--batch", "--tcp",
                 "--edns", "--do", "--pid", "--cpu", "--json", "--histogram", "--label"):
        assert flag in res.stdout, "--help does not mention %s\n%s" % (flag, output(res))


def test_udp_closed_loop_all_answered(vpcdns, local_data):
    report, _ = bench_json(["-s", "127.0.0.1:%d" % vpcdns.port, "-d", local_data, "-n", 2000,
                            "--label", "udp \"closed\""])
    assert report["label"] == 'udp "closed"'
    assert (report["transport"], report["mode"], report["rate_offered"]) == ("udp", "closed", None)
    assert report["outstanding"] == 200
    assert report["sent"] == 2000 and report["answered"] == 2000, report
    assert report["lost"] == 0 and report["timeouts"] == 0 and report["mismatched"] == 0, report
    assert report["rcodes"] == {"NOERROR": 1600, "NXDOMAIN": 400}, report
    assert report["qps"] > 0 and report["duration_s"] > 0, report
    assert report["server_cpu"] is None and report["server_rss_kb"] is None
    check_latency_ordered(report)


def test_text_report(vpcdns, local_data):
    res = run_bench(["-s", "127.0.0.1:%d" % vpcdns.port, "-d", local_data, "-n", 500])
    assert res.returncode == 0, output(res)
    lines = res.stdout.splitlines()
    assert lines[0].startswith("vpcdns-bench: 127.0.0.1:%d udp closed-loop" % vpcdns.port), output(res)
    assert "sent 500  answered 500  lost 0" in res.stdout, output(res)
    assert "rcodes NOERROR 400 NXDOMAIN 100" in res.stdout, output(res)
    assert "latency us  min" in res.stdout and "p99.9" in res.stdout, output(res)


def test_tcp_pipelined(vpcdns, local_data):
    report, _ = bench_json(["-s", "127.0.0.1:%d" % vpcdns.port, "-d", local_data, "-n", 2000,
                            "--tcp", "--sockets", 2, "-c", 50])
    assert report["transport"] == "tcp"
    assert report["sent"] == 2000 and report["answered"] == 2000, report
    assert report["reconnects"] == 0 and report["mismatched"] == 0, report
    assert report["rcodes"] == {"NOERROR": 1600, "NXDOMAIN": 400}, report
    check_latency_ordered(report)


def test_ipv6_and_edns_do(vpcdns, local_data):
    report, _ = bench_json(["-s", "[::1]:%d" % vpcdns.port, "-d", local_data, "-n", 500, "--do"])
    assert report["answered"] == 500 and report["mismatched"] == 0, report
    assert report["rcodes"] == {"NOERROR": 400, "NXDOMAIN": 100}, report


def test_snapshot_names(vpcdns):
    report, _ = bench_json(["-s", "127.0.0.1:%d" % vpcdns.port, "--snapshot", SNAPSHOT, "-n", 1000])
    assert report["queries"] >= 5, report  # every endpoint name with an A record
    assert report["answered"] == 1000 and report["rcodes"] == {"NOERROR": 1000}, report


def test_open_loop_rate_and_warmup(vpcdns, local_data):
    report, _ = bench_json(["-s", "127.0.0.1:%d" % vpcdns.port, "-d", local_data, "-r", 2000,
                            "-l", 0.5, "-w", 0.3])
    assert report["mode"] == "open" and report["rate_offered"] == 2000, report
    # 0.5 s at 2000/s: the 600 warm-up queries are not counted
    assert 980 <= report["sent"] <= 1020, report
    assert report["answered"] == report["sent"] and report["lost"] == 0, report
    assert abs(report["duration_s"] - 0.5) < 0.01, report
    assert 1900 <= report["qps"] <= 2100, report
    check_latency_ordered(report)


def test_server_cpu_and_histogram(vpcdns, local_data, tmp_path):
    hist = tmp_path / "hist.txt"
    report, _ = bench_json(["-s", "127.0.0.1:%d" % vpcdns.port, "-d", local_data, "-l", 0.5,
                            "--pid", vpcdns.proc.p.pid, "--histogram", hist])
    assert report["answered"] > 0 and report["lost"] == 0, report
    cpu = report["server_cpu"]
    assert cpu is not None, report
    assert cpu["total_us_per_query"] == pytest.approx(cpu["user_us_per_query"] + cpu["sys_us_per_query"])
    assert 0 <= cpu["total_us_per_query"] < 1000, report
    assert cpu["utime_ticks"] >= 0 and cpu["stime_ticks"] >= 0, report
    assert 100 < report["server_rss_kb"] < 10**7, report
    rows = [line.split() for line in hist.read_text().splitlines() if not line.startswith("#")]
    assert rows, "empty histogram"
    latencies = [float(r[0]) for r in rows]
    fractions = [float(r[1]) for r in rows]
    assert latencies == sorted(latencies) and fractions == sorted(fractions), rows[:5]
    assert fractions[-1] == pytest.approx(1.0), rows[-1]


def test_silent_server_times_out(tmp_path, local_data):
    # A bound socket that never reads: nothing comes back, not even an ICMP error.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        port = silent.getsockname()[1]
        report, res = bench_json(["-s", "127.0.0.1:%d" % port, "-d", local_data, "-n", 50,
                                  "-t", 200], expect_status=1)
    assert report["sent"] == 50 and report["answered"] == 0, report
    assert report["timeouts"] == 50 and report["lost"] == 50, report
    assert report["latency_us"]["p50"] is None, report
    assert "no query was answered" in res.stderr, output(res)


def test_bad_data_file_names_file_and_line(tmp_path):
    data = tmp_path / "data.txt"
    data.write_text("# comment\nwww.corp.example A\n\nwww.corp.example AAA\n")
    res = run_bench(["-s", "127.0.0.1:9", "-d", data, "-n", 1])
    assert res.returncode == 2, output(res)
    assert '%s:4: unknown type "AAA"' % data in res.stderr, output(res)
    assert len(res.stderr.strip().splitlines()) == 1, output(res)

    data.write_text("www..corp.example A\n")
    res = run_bench(["-s", "127.0.0.1:9", "-d", data, "-n", 1])
    assert res.returncode == 2 and "%s:1: bad name" % data in res.stderr, output(res)


@pytest.mark.parametrize(
    "args, word",
    [
        (["--no-such-option"], "--no-such-option"),
        (["-r", "fast"], "--rate"),
        (["--snapshot", "x"], "exclude"),
        (["-s", "not-an-address"], "--server"),
        (["--sockets", "0"], "--sockets"),
    ],
)
def test_usage_errors(local_data, args, word):
    res = run_bench(["-d", local_data] + args)
    assert res.returncode == 1, output(res)
    assert word in res.stderr, output(res)
