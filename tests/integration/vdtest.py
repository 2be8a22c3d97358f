"""vdtest — helpers of the integration suite: free loopback ports, the upstream NSD, the
vpcdns daemon under test and small DNS clients (UDP, TCP, raw bytes).

Everything talks to 127.0.0.1 or ::1 only, and every wait is bounded."""

import os
import shutil
import signal
import socket
import struct
import subprocess
import time
from pathlib import Path

import pytest

import dns.edns
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdataclass
import dns.rdatatype

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "tests" / "data" / "integ"
SNAPSHOT = DATA / "snapshot"
CORP_ZONE = DATA / "corp.zone"
UPSTREAM_ZONES = {"example.com": "example.com.zone", "amazonaws.com": "amazonaws.com.zone"}
VPCDNS = Path(os.environ.get("VPCDNS_BIN", REPO / "build" / "vpcdns"))
NSD = os.environ.get("NSD_BIN", "/usr/sbin/nsd")

REGION = "eu-west-1"
TIMEOUT = 2.0  # seconds any single query may take


# ---------------------------------------------------------------------------- ports


def _bindable(family, kind, host, port):
    s = socket.socket(family, kind)
    try:
        s.bind((host, port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def free_port(hosts=("127.0.0.1", "::1")):
    """A port free for UDP and TCP on every host in hosts (bounded number of tries)."""
    for _ in range(100):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        ok = True
        for host in hosts:
            fam = socket.AF_INET6 if ":" in host else socket.AF_INET
            for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
                if not _bindable(fam, kind, host, port):
                    ok = False
        if ok:
            return port
    raise RuntimeError("no free loopback port found in 100 tries")


# ---------------------------------------------------------------------------- clients


def make_query(name, rdtype="A", edns=False, payload=4096, dnssec=False, rd=True, qid=None):
    q = dns.message.make_query(
        name,
        rdtype,
        use_edns=0 if (edns or dnssec) else False,
        payload=payload,
        want_dnssec=dnssec,
    )
    if not rd:
        q.flags &= ~dns.flags.RD
    if qid is not None:
        q.id = qid
    return q


def raw_udp(host, port, data, timeout=TIMEOUT):
    """Sends data in one datagram; returns the reply bytes, or None when none came in time."""
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(fam, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(data, (host, port))
        try:
            return s.recvfrom(65535)[0]
        except socket.timeout:
            return None


def recv_exact(sock, n, deadline):
    buf = b""
    while len(buf) < n:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("TCP read timed out (%d of %d bytes)" % (len(buf), n))
        sock.settimeout(left)
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("connection closed after %d of %d bytes" % (len(buf), n))
        buf += chunk
    return buf


def tcp_read_message(sock, deadline):
    (n,) = struct.unpack("!H", recv_exact(sock, 2, deadline))
    return recv_exact(sock, n, deadline)


def tcp_connect(host, port, timeout=TIMEOUT):
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect((host, port))
    return s


def header(wire):
    """(id, flags, qdcount, ancount, nscount, arcount) of a message."""
    return struct.unpack("!HHHHHH", wire[:12])


def encode_question(name, rdtype=1, rdclass=1):
    return dns.name.from_text(name).to_wire() + struct.pack("!HH", rdtype, rdclass)


def raw_query(name, rdtype=1, rdclass=1, qid=0x1234, flags=0x0100, qdcount=1, extra=b""):
    """A hand-built query: exact control over every header field."""
    return struct.pack("!HHHHHH", qid, flags, qdcount, 0, 0, 0) + (
        encode_question(name, rdtype, rdclass) if name is not None else b""
    ) + extra


class Client:
    """Queries one listening address of a DNS server."""

    def __init__(self, host, port):
        self.host = host
        self.port = port

    def __repr__(self):
        return "Client(%s, %d)" % (self.host, self.port)

    def send(self, q, tcp=False, timeout=TIMEOUT):
        if tcp:
            return dns.query.tcp(q, self.host, timeout=timeout, port=self.port)
        return dns.query.udp(q, self.host, timeout=timeout, port=self.port)

    def query(self, name, rdtype="A", tcp=False, **kw):
        return self.send(make_query(name, rdtype, **kw), tcp=tcp)

    def raw(self, data, timeout=TIMEOUT):
        return raw_udp(self.host, self.port, data, timeout)


# ---------------------------------------------------------------------------- answers


def rcode(msg):
    return msg.rcode()


def answer_rrset(msg, name, rdtype):
    name = dns.name.from_text(name) if isinstance(name, str) else name
    rdtype = dns.rdatatype.from_text(rdtype) if isinstance(rdtype, str) else rdtype
    for rrset in msg.answer:
        if rrset.name == name and rrset.rdtype == rdtype:
            return rrset
    return None


def addresses(msg, name, rdtype="A"):
    """Addresses in the answer's RRset of (name, type), in the order received."""
    rrset = answer_rrset(msg, name, rdtype)
    return [] if rrset is None else [r.address for r in rrset]


def soa_of(msg):
    """The authority section's SOA RRset, or None."""
    for rrset in msg.authority:
        if rrset.rdtype == dns.rdatatype.SOA:
            return rrset
    return None


def describe(msg):
    return msg.to_text() if msg is not None else "<no response>"


# ---------------------------------------------------------------------------- processes


class Proc:
    """A child process with its stderr in a file, so a failing test can show it."""

    live = []

    def __init__(self, name, argv, workdir, stdout=None):
        self.name = name
        self.argv = [str(a) for a in argv]
        self.errpath = Path(workdir) / (name + ".stderr")
        self._err = open(self.errpath, "wb")
        self.p = subprocess.Popen(
            self.argv, stdin=subprocess.DEVNULL, stdout=stdout or subprocess.DEVNULL, stderr=self._err
        )
        Proc.live.append(self)

    def stderr_text(self, limit=8000):
        try:
            data = self.errpath.read_bytes()
        except OSError:
            return ""
        return data[-limit:].decode("utf-8", "replace")

    def alive(self):
        return self.p.poll() is None

    def stop(self, sig=signal.SIGTERM, timeout=3.0):
        """Signals the process and waits at most timeout seconds; returns the exit status,
        or None when it had to be killed."""
        rc = self.p.poll()
        if rc is None:
            self.p.send_signal(sig)
            try:
                rc = self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait(5)
                rc = None
        self._err.close()
        if self in Proc.live:
            Proc.live.remove(self)
        return rc

    def failure(self, what):
        return "%s: %s\n--- %s ---\n%s\n--- stderr of %s ---\n%s" % (
            self.name,
            what,
            "command",
            " ".join(self.argv),
            self.name,
            self.stderr_text(),
        )


RELOAD_ZONE = (
    "$ORIGIN reload.example.\n$TTL 300\n"
    "@ IN SOA ns hostmaster 1 7200 900 1209600 60\n"
    "@ IN NS ns\nns IN A 192.0.2.53\nhost IN A 192.0.2.1\n"
)


def copy_reload_data(tmp_path):
    """A copy of the example snapshot and a small zone file in tmp_path, for tests that change
    local data and reload it: (snapshot directory, zone file)."""
    snap = Path(tmp_path) / "snap"
    shutil.copytree(SNAPSHOT, snap)
    zone = Path(tmp_path) / "reload.zone"
    zone.write_text(RELOAD_ZONE)
    return snap, zone


def wait_for(predicate, limit=3.0):
    """True once predicate() is true, polled every 50 ms; False after limit seconds."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def wait_until_answers(proc, client, name, rdtype="A", limit=10.0):
    """Polls client until it answers anything for name, at most limit seconds."""
    deadline = time.monotonic() + limit
    q = make_query(name, rdtype)
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(proc.failure("exited with status %s while starting" % proc.p.returncode))
        wire = raw_udp(client.host, client.port, q.to_wire(), timeout=0.2)
        if wire is not None:
            return
        time.sleep(0.05)
    raise RuntimeError(proc.failure("did not answer within %.0f s" % limit))


NSD_CONF = """server:
    ip-address: {host}@{port}
    port: {port}
    username: ""
    chroot: ""
    zonesdir: "{zonesdir}"
    pidfile: "{tmp}/nsd.pid"
    database: ""
    zonelistfile: "{tmp}/zone.list"
    xfrdfile: "{tmp}/xfrd.state"
    xfrdir: "{tmp}"
    logfile: "{tmp}/nsd.log"
    verbosity: 1
    hide-version: yes
    server-count: 1
    minimal-responses: no
remote-control:
    control-enable: no
"""


def start_nsd(tmp, host="127.0.0.1"):
    """NSD serving tests/data/integ/upstream/ on host and a free port; returns (proc, port)."""
    tmp = Path(tmp)
    port = free_port((host,))
    conf = NSD_CONF.format(host=host, port=port, zonesdir=DATA / "upstream", tmp=tmp)
    for zone, path in UPSTREAM_ZONES.items():
        conf += 'zone:\n    name: "%s"\n    zonefile: "%s"\n' % (zone, path)
    (tmp / "nsd.conf").write_text(conf)
    proc = Proc("nsd", [NSD, "-d", "-c", tmp / "nsd.conf"], tmp)
    try:
        wait_until_answers(proc, Client(host, port), "www.example.com")
    except RuntimeError as e:
        proc.stop()
        log = (tmp / "nsd.log").read_text() if (tmp / "nsd.log").exists() else ""
        raise RuntimeError("%s\n--- nsd.log ---\n%s" % (e, log)) from None
    return proc, port


def vpcdns_argv(port, upstream, snapshot=SNAPSHOT, zone=CORP_ZONE, extra=()):
    # Never fall back to /etc/resolv.conf: tests send traffic to loopback only.
    if upstream is None or not str(upstream).startswith(("127.", "[::1]")):
        raise ValueError("tests must forward to a loopback upstream, got %r" % (upstream,))
    argv = [VPCDNS, "--listen", "127.0.0.1:%d" % port, "--listen", "[::1]:%d" % port]
    argv += ["--upstream", upstream]
    if snapshot is not None:
        argv += ["--snapshot", snapshot]
    if zone is not None:
        argv += ["--zone", zone]
    return argv + list(extra)


class Daemon:
    """A running vpcdns: .v4 and .v6 clients, .proc."""

    def __init__(self, proc, port):
        self.proc = proc
        self.port = port
        self.v4 = Client("127.0.0.1", port)
        self.v6 = Client("::1", port)

    def stop(self, sig=signal.SIGTERM, timeout=3.0):
        return self.proc.stop(sig, timeout)


def start_vpcdns(tmp, upstream, argv=None, probe="sqs.%s.amazonaws.com" % REGION, name="vpcdns"):
    """Starts vpcdns on 127.0.0.1 and ::1 (a free port) and waits until it answers."""
    if not VPCDNS.exists():
        raise RuntimeError("%s does not exist: build it first (cmake --build build)" % VPCDNS)
    port = free_port()
    proc = Proc(name, argv(port) if argv else vpcdns_argv(port, upstream), tmp)
    try:
        wait_until_answers(proc, Client("127.0.0.1", port), probe)
    except RuntimeError:
        proc.stop()
        raise
    return Daemon(proc, port)


def run_binary(binary, args, timeout):
    """Runs one of the built programs with args to completion: CompletedProcess."""
    if not binary.exists():
        raise RuntimeError("%s does not exist: build it first (cmake --build build)" % binary)
    return subprocess.run(
        [str(binary)] + [str(a) for a in args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def run_vpcdns(args, timeout=10.0):
    """Runs vpcdns with args to completion (--check, --dump, errors): CompletedProcess."""
    return run_binary(VPCDNS, args, timeout)
