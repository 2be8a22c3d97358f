"""contrib/vpcdns-snapshot, the snapshot refresher, driven with a stand-in `aws` on PATH
(tests/integration/fakeaws/aws, which prints zones/example in the CLI's shape and fails on
request): a capture replaces DIR atomically and vpcdns serves it; every failure exits non-zero
with its one-line message and leaves DIR byte-identical; no temporary directory stays behind;
--interval keeps capturing and stops on SIGTERM. Also vpcdns's own side: a set NextToken is
refused, an empty snapshot warns. Nothing here reaches AWS."""
import json
import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

import vdtest

SCRIPT = vdtest.REPO / "contrib" / "vpcdns-snapshot"
FAKE_BIN = Path(__file__).resolve().parent / "fakeaws"
EXAMPLE = vdtest.REPO / "zones" / "example"
REGION = "us-east-1"
VPC = "vpc-0a1b2c3d4e5f60718"
FILES = ("describe-vpc-endpoints.json", "describe-network-interfaces.json", "describe-subnets.json")


def served_endpoints(data=EXAMPLE):
    eps = json.loads((Path(data) / FILES[0]).read_text())["VpcEndpoints"]
    return [
        e
        for e in eps
        if str(e.get("VpcEndpointType")).lower() == "interface" and str(e.get("State")).lower() == "available"
    ]


class Refresher:
    """Runs vpcdns-snapshot for one DIR in tmp_path, with the stand-in aws first on PATH."""

    def __init__(self, tmp_path):
        self.tmp = Path(tmp_path)
        self.parent = self.tmp / "lib"
        self.parent.mkdir()
        self.dir = self.parent / "snapshot"
        self.log = self.tmp / "aws-calls.jsonl"
        self.env = dict(os.environ)
        self.env["PATH"] = "%s:%s" % (FAKE_BIN, os.environ.get("PATH", "/usr/bin:/bin"))
        self.env["FAKE_AWS_LOG"] = str(self.log)
        # Were the real CLI ever reached, it would find no credentials and no metadata service.
        self.env.update(
            AWS_CONFIG_FILE="/dev/null",
            AWS_SHARED_CREDENTIALS_FILE="/dev/null",
            AWS_EC2_METADATA_DISABLED="true",
        )
        for k in ("AWS_PROFILE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
            self.env.pop(k, None)

    def argv(self, *extra):
        return [str(SCRIPT), "--region", REGION, "--vpcdns", str(vdtest.VPCDNS), *extra, str(self.dir)]

    def run(self, *extra, timeout=60, **env):
        e = dict(self.env, **{k: str(v) for k, v in env.items()})
        return subprocess.run(
            self.argv(*extra), env=e, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout
        )

    def popen(self, *extra, **env):
        e = dict(self.env, **{k: str(v) for k, v in env.items()})
        err = open(self.tmp / "refresher.stderr", "wb")
        return subprocess.Popen(self.argv(*extra), env=e, stdin=subprocess.DEVNULL, stdout=err, stderr=err)

    def stderr_of_popen(self):
        return (self.tmp / "refresher.stderr").read_text(errors="replace")

    def calls(self):
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines() if line.strip()]

    def state(self):
        """What a reader sees: DIR's link target and the bytes of every file through DIR."""
        target = os.readlink(self.dir) if self.dir.is_symlink() else None
        files = (
            {str(p.relative_to(self.dir)): p.read_bytes() for p in sorted(self.dir.rglob("*")) if p.is_file()}
            if self.dir.exists()
            else None
        )
        return target, files

    def leftovers(self):
        """Temporary files and directories of the refresher in DIR's parent."""
        return sorted(p.name for p in self.parent.iterdir() if ".tmp." in p.name)

    def generations(self):
        return sorted(p.name for p in self.parent.iterdir() if p.name.startswith(".snapshot.snap."))


@pytest.fixture
def refresher(tmp_path):
    if shutil.which("jq") is None:
        pytest.fail("jq is missing: contrib/deps.sh installs it")
    return Refresher(tmp_path)


def data_copy(tmp_path, name, edit=None):
    """A copy of zones/example's capture in tmp_path/name, edit(endpoints_doc) applied."""
    d = Path(tmp_path) / name
    d.mkdir()
    for f in FILES:
        shutil.copy(EXAMPLE / f, d / f)
    if edit is not None:
        doc = json.loads((d / FILES[0]).read_text())
        edit(doc)
        (d / FILES[0]).write_text(json.dumps(doc, indent=4) + "\n")
    return d


def test_capture_makes_dir_a_checked_snapshot_with_only_the_served_endpoints_interfaces(refresher):
    r = refresher.run("--vpc-id", VPC)
    assert r.returncode == 0, r.stderr
    assert "captured 21 endpoints (18 served)" in r.stdout, r.stdout
    assert refresher.dir.is_symlink()
    target = os.readlink(refresher.dir)
    assert target.startswith(".snapshot.snap.") and "/" not in target  # relative, a sibling
    assert sorted(p.name for p in refresher.dir.iterdir()) == sorted(FILES)
    # The endpoints file is the CLI's output unchanged.
    assert (refresher.dir / FILES[0]).read_bytes() == (EXAMPLE / FILES[0]).read_bytes()
    assert refresher.leftovers() == []
    # The generation directory is readable by another user (vpcdns after dropping root).
    assert (refresher.parent / target).stat().st_mode & 0o055 == 0o055

    calls = refresher.calls()
    assert [c["op"] for c in calls] == ["describe-vpc-endpoints", "describe-network-interfaces", "describe-subnets"]
    assert all(c["region"] == REGION for c in calls)
    assert calls[0]["args"]["filters"] == ["Name=vpc-id,Values=%s" % VPC]
    served = served_endpoints()
    want_enis = sorted({i for e in served for i in e["NetworkInterfaceIds"]})
    assert sorted(calls[1]["args"]["network-interface-ids"]) == want_enis
    # Neither the pending endpoint's interfaces nor the instance/NAT/Lambda ones were asked.
    all_enis = {n["NetworkInterfaceId"] for n in json.loads((EXAMPLE / FILES[1]).read_text())["NetworkInterfaces"]}
    assert len(all_enis) > len(want_enis)
    assert sorted(calls[2]["args"]["subnet-ids"]) == sorted({s for e in served for s in e["SubnetIds"]})
    subnets = json.loads((refresher.dir / FILES[2]).read_text())["Subnets"]
    assert sorted(s["AvailabilityZoneId"] for s in subnets) == ["use1-az1", "use1-az4", "use1-az6"]

    check = vdtest.run_vpcdns(["--check", "--snapshot", refresher.dir])
    assert check.returncode == 0 and check.stdout.endswith("ok\n"), check.stderr


def test_vpcdns_serves_each_new_capture(refresher, tmp_path, nsd):
    assert refresher.run().returncode == 0
    upstream = "%s:%d" % nsd
    argv = lambda p: vdtest.vpcdns_argv(p, upstream, snapshot=refresher.dir, zone=None)  # noqa: E731
    d = vdtest.start_vpcdns(tmp_path, upstream, argv=argv, probe="sqs.us-east-1.amazonaws.com")
    sqs = "sqs.us-east-1.amazonaws.com"
    try:
        assert sorted(vdtest.addresses(d.v4.query(sqs), sqs)) == ["10.0.1.10", "10.0.2.10", "10.0.3.10"]
        # A new capture without the sqs endpoint replaces DIR; a reload serves it.
        gone = data_copy(tmp_path, "no-sqs", lambda doc: doc["VpcEndpoints"].pop(0))
        r = refresher.run(FAKE_AWS_DATA=gone)
        assert r.returncode == 0, r.stderr
        assert "captured 20 endpoints (17 served)" in r.stdout
        d.proc.p.send_signal(signal.SIGHUP)
        assert vdtest.wait_for(
            lambda: "10.0.1.10" not in vdtest.addresses(d.v4.query(sqs), sqs), limit=5.0
        ), d.proc.failure("still serves the old sqs endpoint after the new capture")
        sts = "sts.us-east-1.amazonaws.com"
        assert sorted(vdtest.addresses(d.v4.query(sts), sts)) == ["10.0.1.11", "10.0.2.11"]
    finally:
        d.stop()


def test_new_capture_keeps_the_previous_one_and_removes_older(refresher, tmp_path):
    assert refresher.run().returncode == 0
    first = os.readlink(refresher.dir)
    gone = data_copy(tmp_path, "fewer", lambda doc: doc["VpcEndpoints"].pop(0))
    assert refresher.run(FAKE_AWS_DATA=gone).returncode == 0
    second = os.readlink(refresher.dir)
    assert second != first
    assert refresher.generations() == sorted([first, second])
    assert refresher.run().returncode == 0
    third = os.readlink(refresher.dir)
    assert refresher.generations() == sorted([second, third])  # the oldest is gone
    assert refresher.leftovers() == []


def test_identical_capture_leaves_dir_alone(refresher):
    assert refresher.run().returncode == 0
    before = refresher.state()
    mtime = refresher.dir.lstat().st_mtime_ns
    r = refresher.run()
    assert r.returncode == 0, r.stderr
    assert "unchanged" in r.stdout and r.stderr == ""
    assert refresher.state() == before
    assert refresher.dir.lstat().st_mtime_ns == mtime  # no swap: no reload for vpcdns
    assert refresher.leftovers() == []


def test_a_plain_directory_becomes_a_symlink_once(refresher):
    refresher.dir.mkdir()
    (refresher.dir / "describe-vpc-endpoints.json").write_text('{"VpcEndpoints": []}\n')
    (refresher.dir / "describe-network-interfaces.json").write_text('{"NetworkInterfaces": []}\n')
    r = refresher.run()
    assert r.returncode == 0, r.stderr
    assert "was a directory" in r.stderr
    assert refresher.dir.is_symlink()
    assert (refresher.parent / ".snapshot.snap.was-directory" / FILES[0]).exists()  # the previous one


# (mode, operation that fails, expected part of the message, exit status of aws if it fails)
FAILURES = [
    ("throttle", "describe-vpc-endpoints", "describe-vpc-endpoints: aws exited with status 254: "
     "An error occurred (RequestLimitExceeded)", "throttled"),
    ("throttle", "describe-network-interfaces", "describe-network-interfaces: aws exited with status 254", "throttled"),
    ("throttle", "describe-subnets", "describe-subnets: aws exited with status 254", "throttled"),
    ("credentials", "describe-vpc-endpoints", "aws exited with status 253: Unable to locate credentials",
     "no valid AWS credentials"),
    ("cutoff", "describe-vpc-endpoints", "describe-vpc-endpoints: the output is not complete JSON (cut off?)", None),
    ("cutoff", "describe-network-interfaces", "describe-network-interfaces: the output is not complete JSON", None),
    ("garbage", "describe-subnets", "describe-subnets: the output is not complete JSON", None),
    ("nexttoken", "describe-vpc-endpoints", "describe-vpc-endpoints: NextToken is set: the AWS CLI stopped paging",
     "incomplete"),
    ("nexttoken", "describe-network-interfaces", "describe-network-interfaces: NextToken is set", None),
    ("bad-data", "describe-network-interfaces", "vpcdns --check: refused the capture: ", "NetworkInterfaces[0]"),
]


@pytest.mark.parametrize("mode,op,message,extra", FAILURES, ids=["%s-%s" % (f[0], f[1]) for f in FAILURES])
def test_failure_exits_nonzero_and_leaves_dir_byte_identical(refresher, mode, op, message, extra):
    assert refresher.run().returncode == 0
    before = refresher.state()
    gens = refresher.generations()
    r = refresher.run(FAKE_AWS_FAIL=mode, FAKE_AWS_FAIL_OP=op)
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    lines = r.stderr.splitlines()
    assert len(lines) == 1, r.stderr  # one clear line
    assert lines[0].startswith("vpcdns-snapshot: error: "), r.stderr
    assert message in lines[0], r.stderr
    if extra:
        assert extra in lines[0], r.stderr
    assert r.stdout == ""
    assert refresher.state() == before
    assert refresher.generations() == gens
    assert refresher.leftovers() == []


def test_failure_before_any_capture_leaves_no_dir(refresher):
    r = refresher.run(FAKE_AWS_FAIL="throttle")
    assert r.returncode == 1
    assert not refresher.dir.exists() and not refresher.dir.is_symlink()
    assert refresher.generations() == [] and refresher.leftovers() == []


def test_unknown_interface_is_a_failure(refresher, tmp_path):
    # An endpoint deleted between the two calls: its ENI is gone, AWS says NotFound.
    def ghost(doc):
        doc["VpcEndpoints"][0]["NetworkInterfaceIds"].append("eni-0ffffffffffffffff")

    r = refresher.run(FAKE_AWS_DATA=data_copy(tmp_path, "ghost", ghost))
    assert r.returncode == 1
    assert "describe-network-interfaces: aws exited with status 254: An error occurred " \
        "(InvalidNetworkInterfaceID.NotFound)" in r.stderr
    assert refresher.leftovers() == []


def test_many_interfaces_are_asked_in_batches_and_merged(refresher):
    r = refresher.run(VPCDNS_SNAPSHOT_BATCH=7)
    assert r.returncode == 0, r.stderr
    eni_calls = [c for c in refresher.calls() if c["op"] == "describe-network-interfaces"]
    asked = [i for c in eni_calls for i in c["args"]["network-interface-ids"]]
    assert len(eni_calls) == (len(asked) + 6) // 7 and len(eni_calls) > 1
    assert all(len(c["args"]["network-interface-ids"]) <= 7 for c in eni_calls)
    merged = json.loads((refresher.dir / FILES[1]).read_text())
    assert sorted(n["NetworkInterfaceId"] for n in merged["NetworkInterfaces"]) == sorted(asked)
    assert len(asked) == len(set(asked))


def test_empty_capture_is_kept_with_a_warning_and_no_region_wide_calls(refresher, tmp_path):
    empty = data_copy(tmp_path, "empty", lambda doc: doc["VpcEndpoints"].clear())
    r = refresher.run(FAKE_AWS_DATA=empty)
    assert r.returncode == 0, r.stderr
    assert "warning" in r.stderr and "lists no endpoints" in r.stderr
    # no ids: no describe-network-interfaces call, which would list the whole region
    assert [c["op"] for c in refresher.calls()] == ["describe-vpc-endpoints"]
    assert json.loads((refresher.dir / FILES[1]).read_text()) == {"NetworkInterfaces": []}
    check = vdtest.run_vpcdns(["--check", "--snapshot", refresher.dir])
    assert check.returncode == 0, check.stderr
    assert check.stdout.endswith("ok\n")
    assert "event=snapshot_empty" in check.stderr and str(refresher.dir) in check.stderr


def test_interval_captures_repeatedly_and_stops_on_sigterm(refresher):
    p = refresher.popen("--interval", "1")
    try:
        assert vdtest.wait_for(
            lambda: sum(c["op"] == "describe-vpc-endpoints" for c in refresher.calls()) >= 3, limit=15.0
        ), refresher.stderr_of_popen()
        p.send_signal(signal.SIGTERM)
        assert p.wait(10) == 0, refresher.stderr_of_popen()
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(5)
    out = refresher.stderr_of_popen()
    assert "captured 21 endpoints" in out and "unchanged" in out, out
    assert out.rstrip().endswith("vpcdns-snapshot: stopped"), out
    assert refresher.dir.is_symlink() and refresher.leftovers() == []
    # Each wait is 1 s +- 10 %, after the capture: calls at least 0.9 s apart (some slack).
    times = [c["time"] for c in refresher.calls() if c["op"] == "describe-vpc-endpoints"]
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert len(gaps) >= 2 and min(gaps) >= 0.85, gaps


def test_interval_keeps_going_after_failures(refresher):
    assert refresher.run().returncode == 0
    before = refresher.state()
    p = refresher.popen("--interval", "1", FAKE_AWS_FAIL="throttle")
    try:
        assert vdtest.wait_for(
            lambda: refresher.stderr_of_popen().count("keeping the previous snapshot") >= 2, limit=15.0
        ), refresher.stderr_of_popen()
        assert p.poll() is None
        p.send_signal(signal.SIGTERM)
        assert p.wait(10) == 0
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(5)
    assert "RequestLimitExceeded" in refresher.stderr_of_popen()
    assert refresher.state() == before
    assert refresher.leftovers() == []


def test_sigterm_during_a_slow_call_cleans_up(refresher):
    p = refresher.popen(FAKE_AWS_DELAY=30)
    try:
        assert vdtest.wait_for(lambda: len(refresher.calls()) >= 1, limit=10.0), refresher.stderr_of_popen()
        assert refresher.leftovers() != []  # the capture is under way
        started = time.monotonic()
        p.send_signal(signal.SIGTERM)
        rc = p.wait(10)
        assert time.monotonic() - started < 5
        assert rc != 0
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(5)
    aws_pid = refresher.calls()[0]["pid"]
    assert vdtest.wait_for(lambda: not Path("/proc/%d" % aws_pid).exists(), limit=5.0), "aws was left running"
    assert refresher.leftovers() == []
    assert not refresher.dir.exists()


@pytest.mark.parametrize(
    "args,message",
    [
        ([], "--region: expected a region"),
        (["--region", "mars-1"], "--region: expected a region such as us-east-1, got 'mars-1'"),
        (["--region", REGION, "--vpc-id", "vpc-12"], "--vpc-id: expected a VPC id"),
        (["--region", REGION, "--interval", "0"], "--interval: expected a whole number of seconds, at least 1"),
        (["--region", REGION, "--interval", "1m"], "--interval: expected a whole number"),
        (["--region", REGION, "--vpcdns", "/nonexistent/vpcdns"], "/nonexistent/vpcdns: not found"),
        (["--region", REGION, "--bogus"], "unknown option '--bogus'"),
        (["--region", REGION, "--hosted-zones"], "--hosted-zones: expected --vpc-id too"),
    ],
)
def test_usage_errors(refresher, args, message):
    r = subprocess.run(
        [str(SCRIPT), *args, str(refresher.dir)], env=refresher.env, capture_output=True, text=True, timeout=30
    )
    assert r.returncode == 2, r.stderr
    assert message in r.stderr
    assert refresher.calls() == []


def test_dir_whose_parent_is_missing(refresher):
    r = subprocess.run(
        [str(SCRIPT), "--region", REGION, str(refresher.tmp / "nope" / "snap")],
        env=refresher.env, capture_output=True, text=True, timeout=30,
    )
    assert r.returncode == 2 and "does not exist" in r.stderr


def test_help(refresher):
    r = subprocess.run([str(SCRIPT), "--help"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0
    assert r.stdout.startswith("Usage: vpcdns-snapshot --region REGION [--vpc-id VPC] [--hosted-zones] "
                               "[--interval SECONDS]")


def test_vpcdns_refuses_a_set_next_token(tmp_path):
    snap = data_copy(tmp_path, "paged", lambda doc: doc.update(NextToken="eyJOZXh0VG9rZW4iOiBudWxsfQ=="))
    r = vdtest.run_vpcdns(["--check", "--snapshot", snap])
    assert r.returncode == 1
    assert "%s/describe-vpc-endpoints.json: NextToken: expected null or no NextToken" % snap in r.stderr
    assert "incomplete" in r.stderr and "ok" not in r.stdout


def test_man_page_is_clean_under_mandoc():
    mandoc = shutil.which("mandoc")
    if mandoc is None:
        pytest.fail("mandoc is missing: contrib/deps.sh installs it")
    r = subprocess.run([mandoc, "-Tlint", "-W", "warning", vdtest.REPO / "man" / "vpcdns-snapshot.1"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and r.stdout == "" and r.stderr == "", r.stdout + r.stderr


def test_readers_never_see_a_mixed_or_missing_snapshot(refresher, tmp_path):
    """Swaps between two captures whose ENI ids differ, while vpcdns --check reads DIR in a
    loop: a reader that got endpoints from one capture and interfaces from the other, or no
    DIR at all, fails."""
    def pad(doc):
        # Gateway endpoints (not served, no interfaces) make the endpoints file take a while
        # to parse, so that a swap often lands between a reader's two file opens.
        gateway = next(e for e in doc["VpcEndpoints"] if e["VpcEndpointType"] == "Gateway")
        for i in range(4000):
            doc["VpcEndpoints"].append(dict(gateway, VpcEndpointId="vpce-0%016x" % i))

    a = data_copy(tmp_path, "a", pad)
    b = data_copy(tmp_path, "b")
    for f in FILES[:2]:
        (b / f).write_text((a / f).read_text().replace('"eni-0', '"eni-1'))
    assert refresher.run(FAKE_AWS_DATA=a).returncode == 0
    failures, checks, stop = [], [0], []

    def reader():
        while not stop and checks[0] < 2000:
            r = vdtest.run_vpcdns(["--check", "--snapshot", refresher.dir])
            checks[0] += 1
            if r.returncode != 0:
                failures.append(r.stderr)

    t = threading.Thread(target=reader)
    t.start()
    try:
        for i in range(8):
            r = refresher.run(FAKE_AWS_DATA=b if i % 2 == 0 else a)
            assert r.returncode == 0, r.stderr
    finally:
        stop.append(True)
        t.join(30)
    assert checks[0] >= 8
    assert failures == [], failures[:3]
    assert refresher.leftovers() == []


def test_a_second_run_on_the_same_dir_is_refused_while_one_captures(refresher):
    p = refresher.popen(FAKE_AWS_DELAY=3)
    try:
        assert vdtest.wait_for(lambda: len(refresher.calls()) >= 1, limit=10.0), refresher.stderr_of_popen()
        r = refresher.run()
        assert r.returncode == 1
        assert r.stderr.strip() == "vpcdns-snapshot: error: lock: another vpcdns-snapshot is capturing into %s" % (
            refresher.dir)
        assert p.wait(30) == 0, refresher.stderr_of_popen()
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(5)
    assert refresher.dir.is_symlink() and refresher.leftovers() == []


# ---- --hosted-zones: the Route 53 private hosted zones of the VPC ----

HOSTED_ZONE = "Z0CORPINTERNAL01"


def hosted_data(tmp_path, edit=None):
    """zones/example's capture plus one private hosted zone (tests/data/hosted/corp.json)."""
    d = data_copy(tmp_path, "hosted-data")
    (d / "hosted-zones").mkdir()
    text = (vdtest.REPO / "tests" / "data" / "hosted" / "corp.json").read_text()
    if edit is not None:
        text = edit(text)
    (d / "hosted-zones" / (HOSTED_ZONE + ".json")).write_text(text)
    return d


def test_hosted_zones_are_captured_checked_and_loaded(refresher, tmp_path):
    data = hosted_data(tmp_path)
    r = refresher.run("--vpc-id", VPC, "--hosted-zones", FAKE_AWS_DATA=data)
    assert r.returncode == 0, r.stderr
    assert "1 hosted zones" in r.stdout, r.stdout
    calls = refresher.calls()
    assert [c["op"] for c in calls][3:] == ["list-hosted-zones-by-vpc", "list-resource-record-sets"]
    assert calls[3]["args"]["vpc-id"] == [VPC] and calls[3]["args"]["vpc-region"] == [REGION]
    assert calls[4]["args"]["hosted-zone-id"] == [HOSTED_ZONE]
    got = refresher.dir / "hosted-zones" / (HOSTED_ZONE + ".json")
    assert json.loads(got.read_text()) == json.loads((data / "hosted-zones" / got.name).read_text())
    assert (refresher.dir / "list-hosted-zones-by-vpc.json").exists()
    # the VPC the associations are of, for views
    assert (refresher.dir / "list-hosted-zones-by-vpc.vpc-id").read_text() == VPC + "\n"
    assert refresher.leftovers() == []
    # vpcdns loads DIR/hosted-zones/*.json with the snapshot
    r = vdtest.run_vpcdns(["--check", "--snapshot", refresher.dir, "--upstream", "127.0.0.1:9",
                           "--listen", "127.0.0.1:%d" % vdtest.free_port()])
    assert r.returncode == 0, r.stderr
    assert "hosted zones: 1 (" in r.stdout and "hosted zone corp.internal." in r.stdout, r.stdout
    # the same capture again: DIR is left alone
    r = refresher.run("--vpc-id", VPC, "--hosted-zones", FAKE_AWS_DATA=data)
    assert r.returncode == 0 and "unchanged" in r.stdout, r.stdout + r.stderr


def test_hosted_zone_failures_leave_dir_as_it_was(refresher, tmp_path):
    good = hosted_data(tmp_path)
    assert refresher.run("--vpc-id", VPC, "--hosted-zones", FAKE_AWS_DATA=good).returncode == 0
    before = refresher.state()
    r = refresher.run("--vpc-id", VPC, "--hosted-zones", FAKE_AWS_DATA=good, FAKE_AWS_FAIL="truncated",
                      FAKE_AWS_FAIL_OP="list-resource-record-sets")
    assert r.returncode == 1, r.stderr
    assert "list-resource-record-sets %s: IsTruncated is set" % HOSTED_ZONE in r.stderr, r.stderr
    assert refresher.state() == before and refresher.leftovers() == []

    shutil.rmtree(good)
    spoke = "vpc-0fedcba9876543210"
    good = hosted_data(tmp_path)
    calls = len(refresher.calls())
    r = refresher.run("--vpc-id", VPC, "--hosted-zones-vpc-id", spoke, FAKE_AWS_DATA=good)
    assert r.returncode == 0, r.stderr
    listed = [c for c in refresher.calls()[calls:] if c["op"] == "list-hosted-zones-by-vpc"]
    assert [c["args"]["vpc-id"] for c in listed] == [[spoke]]
    assert (refresher.dir / "list-hosted-zones-by-vpc.vpc-id").read_text() == spoke + "\n"
    before = refresher.state()
    shutil.rmtree(good)
    bad = hosted_data(tmp_path, lambda t: t.replace('"10.0.0.25"', '"10.0.0.256"'))
    r = refresher.run("--vpc-id", VPC, "--hosted-zones", FAKE_AWS_DATA=bad)
    assert r.returncode == 1, r.stderr
    assert ("vpcdns --check: refused the capture: hosted-zones/%s.json: ResourceRecordSets[23] "
            "(mx1.corp.internal. A)" % HOSTED_ZONE) in r.stderr, r.stderr
    assert refresher.state() == before and refresher.leftovers() == []
def test_a_capture_of_several_vpcs_is_checked_one_vpc_at_a_time(refresher, tmp_path):
    """vpcdns refuses data of several VPCs without a choice (--vpc or views), but serves it
    with one: the refresher checks each VPC of the capture and keeps it."""
    other = "vpc-0f0f0f0f0f0f0f0f0"

    def split(doc):
        served = [e for e in doc["VpcEndpoints"]
                  if str(e.get("VpcEndpointType")).lower() == "interface"
                  and str(e.get("State")).lower() == "available"]
        for e in served[:3]:
            e["VpcId"] = other

    data = data_copy(tmp_path, "two-vpcs", split)
    r = refresher.run(FAKE_AWS_DATA=data)
    assert r.returncode == 0, r.stderr
    assert "captured 21 endpoints (18 served)" in r.stdout, r.stdout
    alone = vdtest.run_vpcdns(["--check", "--snapshot", refresher.dir])
    assert alone.returncode == 1 and other in alone.stderr and VPC in alone.stderr, alone.stderr
    for vpc in (VPC, other):
        check = vdtest.run_vpcdns(["--check", "--snapshot", refresher.dir, "--vpc", vpc])
        assert check.returncode == 0, check.stderr
