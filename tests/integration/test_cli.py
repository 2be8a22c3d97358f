"""The command line: --check, --dump, --help, --version, the config file, and errors that
name the file and the place."""

import re
import shutil
import signal
import socket

import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import pytest

from vdtest import CORP_ZONE, SNAPSHOT, VPCDNS, addresses, describe, free_port

SQS = "sqs.eu-west-1.amazonaws.com."


def output(res):
    return "exit %d\n--- stdout ---\n%s\n--- stderr ---\n%s" % (res.returncode, res.stdout, res.stderr)


def test_help(run_vpcdns):
    res = run_vpcdns(["--help"])
    assert res.returncode == 0, output(res)
    text = res.stdout + res.stderr
    for flag in ("--config", "--listen", "--upstream", "--snapshot", "--zone", "--check", "--dump"):
        assert flag in text, "--help does not mention %s\n%s" % (flag, output(res))


def test_short_help_and_version(run_vpcdns):
    long_help = run_vpcdns(["--help"])
    short_help = run_vpcdns(["-h"])
    assert short_help.returncode == 0, output(short_help)
    assert short_help.stdout == long_help.stdout, output(short_help)
    res = run_vpcdns(["-V"])
    assert res.returncode == 0, output(res)
    assert res.stdout.startswith("vpcdns 0.1.0"), output(res)


def test_help_lists_config_keys_and_ends_with_no_path(run_vpcdns):
    res = run_vpcdns(["--help"])
    assert res.returncode == 0, output(res)
    for line in ("  workers: 1 to 64, default the CPUs this process may use",
                 "  cache_size: 0 to 100000000, default 100000",
                 "  prefetch: default true",
                 "  -h, --help", "  -V, --version", "--allow CIDR", "--user USER"):
        assert line in res.stdout, "--help lacks %r\n%s" % (line, output(res))
    last = res.stdout.rstrip("\n").splitlines()[-1]
    assert "/" not in last and ".yaml" not in res.stdout, output(res)
    assert max(len(line) for line in res.stdout.splitlines()) <= 80, output(res)


def test_version(run_vpcdns):
    res = run_vpcdns(["--version"])
    assert res.returncode == 0, output(res)
    assert "0.1.0" in res.stdout + res.stderr, output(res)


def test_unknown_flag_fails(run_vpcdns):
    res = run_vpcdns(["--no-such-flag"])
    assert res.returncode != 0, output(res)
    assert "--no-such-flag" in res.stderr, output(res)


def test_check_prints_counts(run_vpcdns):
    res = run_vpcdns(["--check", "--snapshot", SNAPSHOT, "--zone", CORP_ZONE])
    assert res.returncode == 0, output(res)
    text = res.stdout + res.stderr
    # 9 endpoints in the file, 7 of them Interface endpoints in state available
    numbers = set(re.findall(r"\b\d+\b", text))
    assert "9" in numbers and "7" in numbers, "endpoint counts missing:\n" + output(res)


def test_check_names_what_differs_from_the_defaults(run_vpcdns, tmp_path):
    res = run_vpcdns(["--check", "--upstream", "127.0.0.1:9"])
    assert res.returncode == 0, output(res)
    assert "changed from the defaults: none" in res.stdout.splitlines(), output(res)
    c = tmp_path / "changed.yaml"
    c.write_text("cache_size: 5000\nprefetch: false\nstale_max: 3600\n")
    res = run_vpcdns(["--check", "--config", c, "--upstream", "127.0.0.1:9"])
    assert res.returncode == 0, output(res)
    lines = res.stdout.splitlines()
    assert "changed from the defaults: cache_size 5000, prefetch false" in lines, output(res)
    assert lines[-1] == "ok", output(res)


def test_check_does_not_bind(run_vpcdns):
    # --check must not need the listen address (port 53 of a busy host, say)
    res = run_vpcdns(["--check", "--listen", "127.0.0.1:1", "--snapshot", SNAPSHOT])
    assert res.returncode == 0, output(res)


def parse_dump(text):
    """Master-file lines → set of (owner, ttl, type, rdata text normalised by dnspython)."""
    records = set()
    for line in text.splitlines():
        line = line.split(";", 1)[0].strip()
        if not line or line.startswith("$"):
            continue
        tok = line.split(None, 4)
        assert len(tok) == 5, "not 'owner ttl class type rdata': %r" % line
        owner, ttl, cls, rdtype, rdata = tok
        assert cls.upper() == "IN", line
        rd = dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.from_text(rdtype), rdata)
        records.add((dns.name.from_text(owner).to_text().lower(), int(ttl), rdtype.upper(), rd.to_text()))
    return records


def test_dump_prints_master_file_text(run_vpcdns):
    res = run_vpcdns(["--dump", "--snapshot", SNAPSHOT, "--zone", CORP_ZONE])
    assert res.returncode == 0, output(res)
    records = parse_dump(res.stdout)
    for ip in ("10.1.1.10", "10.1.2.10", "10.1.3.10"):
        assert (SQS, 60, "A", ip) in records, "missing sqs A %s" % ip
    assert ("*.s3.eu-west-1.amazonaws.com.", 60, "A", "10.2.1.20") in records
    assert (
        "api.partner.example.",
        60,
        "CNAME",
        "vpce-0f60718293a4b5c6d-p0o9i8u7.vpce-svc-0f1e2d3c4b5a69788.eu-west-1.vpce.amazonaws.com.",
    ) in records
    assert ("ssm.eu-west-1.amazonaws.com.", 60, "AAAA", "2a05:d018:2:1::40") in records
    assert ("www.corp.example.", 300, "A", "10.100.0.10") in records
    assert ("alias.corp.example.", 300, "CNAME", "alias2.corp.example.") in records
    owners = {r[0] for r in records}
    # nothing from endpoints that must not produce names
    assert not any("logs" in o or "dynamodb" in o for o in owners), sorted(owners)
    # no A records for an ipv6-only endpoint
    assert not any(r[0] == "ssm.eu-west-1.amazonaws.com." and r[2] == "A" for r in records)


def write_snapshot(tmp_path, endpoints_text=None, enis_text=None):
    d = tmp_path / "snap"
    shutil.copytree(SNAPSHOT, d)
    if endpoints_text is not None:
        (d / "describe-vpc-endpoints.json").write_text(endpoints_text)
    if enis_text is not None:
        (d / "describe-network-interfaces.json").write_text(enis_text)
    return d


def test_bad_json_names_file_and_line(run_vpcdns, tmp_path):
    d = write_snapshot(tmp_path, '{\n    "VpcEndpoints": [\n        {"VpcEndpointId": "vpce-1",,}\n    ]\n}\n')
    res = run_vpcdns(["--check", "--snapshot", d])
    assert res.returncode != 0, output(res)
    assert "describe-vpc-endpoints.json" in res.stderr, output(res)
    assert re.search(r"\b3\b", res.stderr), "line 3 not named:\n" + output(res)


def test_wrong_json_type_names_json_path(run_vpcdns, tmp_path):
    text = (SNAPSHOT / "describe-vpc-endpoints.json").read_text()
    bad = text.replace(
        '"DnsName": "sqs.eu-west-1.amazonaws.com"', '"DnsName": 42', 1
    )
    assert bad != text
    d = write_snapshot(tmp_path, bad)
    res = run_vpcdns(["--check", "--snapshot", d])
    assert res.returncode != 0, output(res)
    assert "describe-vpc-endpoints.json" in res.stderr, output(res)
    assert "VpcEndpoints[0]" in res.stderr and "DnsName" in res.stderr, output(res)


def test_missing_snapshot_file(run_vpcdns, tmp_path):
    d = write_snapshot(tmp_path)
    (d / "describe-network-interfaces.json").unlink()
    res = run_vpcdns(["--check", "--snapshot", d])
    assert res.returncode != 0, output(res)
    assert "describe-network-interfaces.json" in res.stderr, output(res)


def test_missing_zone_file(run_vpcdns, tmp_path):
    res = run_vpcdns(["--check", "--zone", tmp_path / "absent.zone"])
    assert res.returncode != 0, output(res)
    assert "absent.zone" in res.stderr, output(res)


def test_bad_zone_names_file_and_line(run_vpcdns, tmp_path):
    z = tmp_path / "broken.zone"
    z.write_text(
        "$ORIGIN broken.example.\n"
        "$TTL 300\n"
        "@ IN SOA ns.broken.example. admin.broken.example. 1 3600 600 86400 60\n"
        "ok IN A 10.0.0.1\n"
        "bad IN A 10.0.0.300\n"
    )
    res = run_vpcdns(["--check", "--zone", z])
    assert res.returncode != 0, output(res)
    assert "broken.zone" in res.stderr, output(res)
    assert re.search(r"\b5\b", res.stderr), "line 5 not named:\n" + output(res)


def test_zone_record_outside_apex_rejected(run_vpcdns, tmp_path):
    z = tmp_path / "outside.zone"
    z.write_text(
        "$TTL 300\n"
        "inside.example. IN SOA ns.inside.example. admin.inside.example. 1 3600 600 86400 60\n"
        "www.inside.example. IN A 10.0.0.1\n"
        "www.elsewhere.example. IN A 10.0.0.2\n"
    )
    res = run_vpcdns(["--check", "--zone", z])
    assert res.returncode != 0, output(res)
    assert "outside.zone" in res.stderr and re.search(r"\b4\b", res.stderr), output(res)


def test_bad_config_names_file_and_line(run_vpcdns, tmp_path):
    c = tmp_path / "bad.yaml"
    c.write_text("listen:\n  - 127.0.0.1:5300\nno_such_key: 1\n")
    res = run_vpcdns(["--check", "--config", c])
    assert res.returncode != 0, output(res)
    assert "bad.yaml" in res.stderr, output(res)
    assert re.search(r"\b3\b", res.stderr) and "no_such_key" in res.stderr, output(res)


def test_config_wrong_type(run_vpcdns, tmp_path):
    c = tmp_path / "type.yaml"
    c.write_text("workers: many\n")
    res = run_vpcdns(["--check", "--config", c])
    assert res.returncode != 0, output(res)
    assert "type.yaml" in res.stderr and "workers" in res.stderr, output(res)


def test_bad_listen_address(run_vpcdns):
    res = run_vpcdns(["--check", "--listen", "not-an-address"])
    assert res.returncode != 0, output(res)
    assert "not-an-address" in res.stderr, output(res)


def test_config_file_runs_the_daemon(start_daemon, nsd, tmp_path):
    c = tmp_path / "vpcdns.yaml"

    def argv(port):
        c.write_text(
            "listen:\n  - 127.0.0.1:%d\n  - '[::1]:%d'\n"
            "upstream:\n  - %s:%d\n"
            "snapshot:\n  - %s\n"
            "zone:\n  - %s\n"
            "log_level: info\nworkers: 2\nupstream_timeout_ms: 1500\n" % (port, port, nsd[0], nsd[1], SNAPSHOT, CORP_ZONE)
        )
        return [VPCDNS, "--config", c]

    d = start_daemon(None, argv=argv)
    msg = d.v4.query(SQS, "A")
    assert len(addresses(msg, SQS)) == 3, describe(msg)
    msg = d.v6.query("www.example.com.", "A")
    assert addresses(msg, "www.example.com.") == ["192.0.2.10"], describe(msg)
    msg = d.v4.query("www.corp.example.", "A")
    assert len(addresses(msg, "www.corp.example.")) == 2, describe(msg)


def test_listen_address_in_use_fails(run_vpcdns):
    port = free_port(("127.0.0.1",))
    held = [socket.socket(socket.AF_INET, kind) for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM)]
    try:
        for s in held:
            s.bind(("127.0.0.1", port))
        held[1].listen(1)
        res = run_vpcdns(
            ["--listen", "127.0.0.1:%d" % port, "--upstream", "127.0.0.1:9", "--snapshot", SNAPSHOT],
            timeout=5,
        )
    finally:
        for s in held:
            s.close()
    assert res.returncode != 0, output(res)
    assert "127.0.0.1:%d" % port in res.stderr, output(res)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_cleanly(start_daemon, nsd, sig):
    d = start_daemon("%s:%d" % nsd)
    assert d.v4.query(SQS, "A").answer
    assert d.v4.query("www.example.com.", "A").answer  # a forwarder that has been used
    status = d.stop(sig, timeout=3.0)
    assert status == 0, d.proc.failure("expected exit 0 within 3 s of %s, got %s" % (sig.name, status))


def test_ipv6_listen_without_brackets_is_refused_with_a_hint(run_vpcdns):
    res = run_vpcdns(["--check", "--listen", "::1:5300"])
    assert res.returncode == 2, output(res)
    assert "did you mean [::1]:5300?" in res.stderr, output(res)
    res = run_vpcdns(["--check", "--listen", "[::1]:5300", "--upstream", "127.0.0.1:9"])
    assert res.returncode == 0, output(res)
    assert "listen: [::1]:5300" in res.stdout, output(res)


def test_unknown_key_suggests_the_closest(run_vpcdns, tmp_path):
    c = tmp_path / "typo.yaml"
    c.write_text("workers: 2\ncache_max_tll: 60\n")
    res = run_vpcdns(["--check", "--config", c])
    assert res.returncode == 2, output(res)
    assert "typo.yaml:2:1: expected a config key (did you mean 'cache_max_ttl'?), got 'cache_max_tll'" in res.stderr, output(res)
    assert "prefetch" not in res.stderr, "the message lists every key:\n" + output(res)


def test_unquoted_ipv6_in_yaml_says_to_quote_it(run_vpcdns, tmp_path):
    c = tmp_path / "v6.yaml"
    c.write_text("listen:\n  - 127.0.0.1:5300\n  - [::1]:5300\n")
    res = run_vpcdns(["--check", "--config", c])
    assert res.returncode == 2, output(res)
    assert "v6.yaml:3:" in res.stderr and "IPv6 address must be quoted" in res.stderr, output(res)
    c.write_text('listen:\n  - 127.0.0.1:5300\n  - "[::1]:5300"\nupstream: 127.0.0.1:9\n')
    res = run_vpcdns(["--check", "--config", c])
    assert res.returncode == 0, output(res)
