"""test_query_log — the query log (docs/query-logs.md): Route 53 Resolver style JSON lines
checked field by field for local, cached, forwarded, NXDOMAIN, NODATA and REFUSED answers over
UDP and TCP; dnstap files read back with dnstap-ldns, and a unix socket read by fstrm_capture;
SIGUSR1 reopening a renamed file; sample 0; the dropped counter when the writer is starved.

Each test starts its own daemon (with NSD as upstream) and stops it: the log is complete once
the daemon has exited."""

import json
import os
import re
import shutil
import signal
import subprocess
import time

import pytest

import dns.rdataclass

import vdtest

DNSTAP_LDNS = shutil.which("dnstap-ldns")
FSTRM_CAPTURE = shutil.which("fstrm_capture")
# The TCP answer of the probe query of start_vpcdns is logged too: tests look for their names.
PROBE = "sqs.%s.amazonaws.com." % vdtest.REGION

FIELDS = {
    "version": str,
    "account_id": str,
    "region": str,
    "vpc_id": str,
    "query_timestamp": str,
    "query_name": str,
    "query_type": str,
    "query_class": str,
    "rcode": str,
    "answers": list,
    "srcaddr": str,
    "srcport": str,
    "transport": str,
    "srcids": dict,
}


def start(tmp, nsd, extra, env=None):
    upstream = "%s:%d" % nsd

    def argv(port):
        return vdtest.vpcdns_argv(port, upstream, extra=extra)

    old = dict(os.environ)
    os.environ.update(env or {})
    try:
        return vdtest.start_vpcdns(tmp, upstream, argv=argv)
    finally:
        os.environ.clear()
        os.environ.update(old)


def stop(d):
    status = d.stop()
    assert status == 0, d.proc.failure("expected exit status 0, got %s" % status)


def read_lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]



def test_route53_lines_field_by_field(nsd, tmp_path):
    log = tmp_path / "q.log"
    d = start(tmp_path, nsd, ["--query-log", "route53:%s" % log, "--allow", "127.0.0.0/8", "--workers", "1"])
    asked = []
    for tcp in (False, True):
        cases = [
            ("mx1.corp.example.", "A", "NOERROR", True),  # local
            ("www.example.com.", "A", "NOERROR", True),  # forwarded, then cached
            ("www.example.com.", "A", "NOERROR", True),
            ("nope.example.com.", "A", "NXDOMAIN", False),
            ("mx1.corp.example.", "AAAA", "NOERROR", False),  # NODATA
        ]
        for name, rdtype, rcode, has_answer in cases:
            r = d.v4.query(name, rdtype, tcp=tcp)
            assert dns.rcode.to_text(r.rcode()) == rcode
            asked.append((name, rdtype, rcode, has_answer, "TCP" if tcp else "UDP"))
        # REFUSED: a client outside allow (::1 is not in it)
        r = d.v6.query("mx1.corp.example.", "A", tcp=tcp)
        assert dns.rcode.to_text(r.rcode()) == "REFUSED"
        asked.append(("mx1.corp.example.", "A", "REFUSED", False, "TCP" if tcp else "UDP"))
    stop(d)
    lines = [l for l in read_lines(log) if l.get("query_name") != PROBE]
    assert len(lines) == len(asked), lines
    for line, (name, rdtype, rcode, has_answer, transport) in zip(lines, asked):
        assert set(line) == set(FIELDS), line
        for key, kind in FIELDS.items():
            assert isinstance(line[key], kind), (key, line)
        assert line["version"] == "1.100000"
        # from the snapshot's describe-vpc-endpoints.json (every endpoint agrees)
        assert line["account_id"] == "123456789012"
        assert line["region"] == "eu-west-1"
        assert line["vpc_id"] == "vpc-0e1d2c3b4a5968778"
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", line["query_timestamp"]), line
        assert line["query_name"] == name
        assert line["query_type"] == rdtype
        assert line["query_class"] == "IN"
        assert line["rcode"] == rcode
        assert line["transport"] == transport
        assert line["srcaddr"] in ("127.0.0.1", "::1")
        assert line["srcport"].isdigit() and 0 < int(line["srcport"]) < 65536
        assert list(line["srcids"]) == ["resolver_endpoint"]
        assert line["srcids"]["resolver_endpoint"].endswith(":%d" % d.port)
        assert bool(line["answers"]) == has_answer, line
        for a in line["answers"]:
            assert set(a) == {"Rdata", "Type", "Class"}
            assert a["Class"] == "IN" and a["Type"] == rdtype and isinstance(a["Rdata"], str)
    www = [l for l in lines if l["query_name"] == "www.example.com."]
    assert www[0]["answers"][0]["Rdata"] == "192.0.2.10"


def dnstap_text(path):
    r = subprocess.run([DNSTAP_LDNS, "-r", str(path)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    return r.stdout


@pytest.mark.skipif(DNSTAP_LDNS is None, reason="dnstap-ldns is not installed")
def test_dnstap_file_reads_back(nsd, tmp_path):
    path = tmp_path / "q.dnstap"
    d = start(tmp_path, nsd, ["--query-log", "dnstap:%s" % path])
    d.v4.query("mx1.corp.example.", "A")
    d.v6.query("www.example.com.", "AAAA")
    d.v4.query("nope.example.com.", "MX", tcp=True)
    stop(d)
    text = dnstap_text(path)
    lines = text.splitlines()
    # dnstap-ldns's short form: time, type (CQ/CR), address, protocol, size, "name" class type
    for kind in ("CQ", "CR"):
        for addr, proto, name, rdtype in (
            ("127.0.0.1", "UDP", "mx1.corp.example.", "A"),
            ("::1", "UDP", "www.example.com.", "AAAA"),
            ("127.0.0.1", "TCP", "nope.example.com.", "MX"),
        ):
            want = [
                l
                for l in lines
                if " %s " % kind in l and addr in l and proto in l and '"%s" IN %s' % (name, rdtype) in l
            ]
            assert len(want) == 1, (kind, addr, proto, name, text)
    # the forwarded question went to NSD and came back: FQ and FR with NSD's address
    for kind in ("FQ", "FR"):
        want = [l for l in lines if " %s " % kind in l and '"www.example.com." in aaaa' in l.lower()]
        assert len(want) == 1, (kind, text)
        assert "127.0.0.1" in want[0], want[0]


@pytest.mark.skipif(
    DNSTAP_LDNS is None or FSTRM_CAPTURE is None, reason="dnstap-ldns or fstrm_capture missing"
)
def test_dnstap_unix_socket(nsd, tmp_path):
    sock = tmp_path / "dnstap.sock"
    out = tmp_path / "captured.dnstap"
    cap = vdtest.Proc(
        "fstrm_capture",
        [FSTRM_CAPTURE, "-t", "protobuf:dnstap.Dnstap", "-u", sock, "-w", out],
        tmp_path,
    )
    try:
        assert vdtest.wait_for(sock.exists, 5.0), cap.failure("no socket")
        d = start(tmp_path, nsd, ["--query-log", "dnstap:unix:%s" % sock])
        d.v4.query("mx1.corp.example.", "A")
        stop(d)
        # fstrm_capture writes a frame as it comes; the file ends when it stops.
        time.sleep(0.3)
    finally:
        cap.stop(signal.SIGINT, timeout=5)
    text = dnstap_text(out)
    assert any(" CQ " in l and '"mx1.corp.example." IN A' in l for l in text.splitlines()), text
    assert any(" CR " in l and '"mx1.corp.example." IN A' in l for l in text.splitlines()), text


def test_sigusr1_reopens_after_rename(nsd, tmp_path):
    log = tmp_path / "q.log"
    d = start(tmp_path, nsd, ["--query-log", "route53:%s" % log])
    d.v4.query("mx1.corp.example.", "A")
    assert vdtest.wait_for(lambda: log.exists() and "mx1.corp.example." in log.read_text(), 5.0)
    os.rename(log, tmp_path / "q.log.1")
    d.proc.p.send_signal(signal.SIGUSR1)
    assert vdtest.wait_for(log.exists, 5.0), d.proc.failure("no new file after SIGUSR1")
    d.v4.query("www.example.com.", "A")
    assert d.proc.alive()
    stop(d)
    old = [l["query_name"] for l in read_lines(tmp_path / "q.log.1")]
    new = [l["query_name"] for l in read_lines(log)]
    assert "mx1.corp.example." in old and "www.example.com." not in old
    assert new == ["www.example.com."]


def test_ids_are_empty_without_a_snapshot(nsd, tmp_path):
    log = tmp_path / "q.log"
    upstream = "%s:%d" % nsd
    argv = lambda port: vdtest.vpcdns_argv(port, upstream, snapshot=None, extra=["--query-log", "route53:%s" % log])
    d = vdtest.start_vpcdns(tmp_path, upstream, argv=argv, probe="www.corp.example")
    d.v4.query("www.corp.example.", "A")
    stop(d)
    lines = read_lines(log)
    assert lines and all((l["account_id"], l["region"], l["vpc_id"]) == ("", "", "") for l in lines)


def test_sigusr1_without_a_query_log_is_harmless(nsd, tmp_path):
    d = start(tmp_path, nsd, [])
    d.proc.p.send_signal(signal.SIGUSR1)
    time.sleep(0.2)
    assert d.v4.query("mx1.corp.example.", "A").rcode() == 0
    stop(d)


def test_sample_zero_logs_nothing(nsd, tmp_path):
    log = tmp_path / "q.log"
    conf = tmp_path / "vpcdns.yaml"
    conf.write_text("query_log:\n  format: route53\n  path: %s\n  sample: 0\n" % log)
    d = start(tmp_path, nsd, ["--config", conf])
    for i in range(20):
        d.v4.query("mx1.corp.example.", "A", tcp=i % 2 == 1)
    stop(d)
    assert log.read_text() == ""


def test_dropped_counter_when_the_writer_is_starved(nsd, tmp_path):
    log = tmp_path / "q.log"
    env = {"VPCDNS_TEST_QLOG_RING_KIB": "4", "VPCDNS_TEST_QLOG_STALL_MS": "2000"}
    d = start(tmp_path, nsd, ["--query-log", "route53:%s" % log, "--workers", "1"], env=env)
    for _ in range(200):
        assert d.v4.query("mx1.corp.example.", "A").rcode() == 0  # never an answer lost
    stop(d)
    m = re.search(r"query_log_dropped=(\d+)", d.proc.stderr_text(limit=200000))
    assert m and int(m.group(1)) > 0, d.proc.failure("no drops counted")
    logged = len(read_lines(log))
    assert 0 < logged < 200 + 1


def test_check_prints_the_setting(tmp_path):
    conf = tmp_path / "vpcdns.yaml"
    conf.write_text("query_log: {format: dnstap, path: /tmp/x.dnstap, sample: 0.5}\n")
    r = vdtest.run_vpcdns(["--config", conf, "--check", "--upstream", "127.0.0.1:1"])
    assert r.returncode == 0, r.stderr
    assert "query_log dnstap:/tmp/x.dnstap sample=0.500000" in r.stdout, r.stdout


def test_bad_settings_are_refused(tmp_path):
    for text in (
        "query_log: {format: syslog, path: x}\n",
        "query_log: {format: route53}\n",
        "query_log: {format: route53, path: unix:/x}\n",
        "query_log: {format: dnstap, path: x, sample: 1.5}\n",
    ):
        conf = tmp_path / "vpcdns.yaml"
        conf.write_text(text)
        r = vdtest.run_vpcdns(["--config", conf, "--check", "--upstream", "127.0.0.1:1"])
        assert r.returncode != 0 and "query_log" in r.stderr or "format" in r.stderr, (text, r.stderr)
    r = vdtest.run_vpcdns(["--query-log", "json:/x", "--check", "--upstream", "127.0.0.1:1"])
    assert r.returncode != 0 and "--query-log" in r.stderr


def test_reload_refreshes_the_ids(nsd, tmp_path):
    """A SIGHUP that loads a capture of another account and VPC: later route53 lines name them."""
    log = tmp_path / "q.log"
    snap, zone = vdtest.copy_reload_data(tmp_path)
    upstream = "%s:%d" % nsd
    argv = lambda port: vdtest.vpcdns_argv(port, upstream, snapshot=str(snap), zone=str(zone),
                                           extra=["--query-log", "route53:%s" % log])
    d = vdtest.start_vpcdns(tmp_path, upstream, argv=argv)
    d.v4.query(PROBE, "A")
    captured = snap / "describe-vpc-endpoints.json"
    text = captured.read_text()
    assert "123456789012" in text and "vpc-0e1d2c3b4a5968778" in text
    captured.write_text(text.replace("123456789012", "210987654321")
                        .replace("vpc-0e1d2c3b4a5968778", "vpc-0aaaabbbbccccdddd"))
    d.proc.p.send_signal(signal.SIGHUP)
    assert vdtest.wait_for(lambda: "event=reload_done" in d.proc.stderr_text()), d.proc.stderr_text()

    def renamed():
        d.v4.query(PROBE, "A")
        lines = [json.loads(l) for l in log.read_text().splitlines()]
        return bool(lines) and lines[-1]["account_id"] == "210987654321"

    assert vdtest.wait_for(renamed, limit=5.0), log.read_text()[-2000:]
    stop(d)
    last = read_lines(log)[-1]
    assert (last["account_id"], last["vpc_id"], last["region"]) == (
        "210987654321", "vpc-0aaaabbbbccccdddd", "eu-west-1")


def test_vpc_names_the_vpc_of_a_capture_of_several(nsd, tmp_path):
    """A capture of two VPCs served with --vpc: route53 lines name that VPC (the other VPC's
    endpoints do not count)."""
    log = tmp_path / "q.log"
    upstream = "%s:%d" % nsd
    for vpc in ("vpc-0a1a1a1a1a1a1a1a1", "vpc-0b2b2b2b2b2b2b2b2"):
        log.unlink(missing_ok=True)
        argv = lambda port: vdtest.vpcdns_argv(
            port, upstream, snapshot=vdtest.DATA / "views",
            extra=["--vpc", vpc, "--query-log", "route53:%s" % log])
        d = vdtest.start_vpcdns(tmp_path, upstream, argv=argv, probe="www.corp.example")
        d.v4.query("www.corp.example.", "A")
        stop(d)
        lines = read_lines(log)
        assert lines and all(l["vpc_id"] == vpc for l in lines), lines[:2]
