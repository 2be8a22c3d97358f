"""The operator log: the events an on-call engineer reads (docs/operator-log.md). An upstream
going down and coming back is logged once for the process, not once per worker; a reload says
what changed; every line parses as logfmt."""

import re
import signal
import socket
import time
import uuid
from pathlib import Path

import vdtest
from vdtest import (
    DATA,
    NSD,
    NSD_CONF,
    SNAPSHOT,
    UPSTREAM_ZONES,
    VPCDNS,
    Proc,
    Client,
    free_port,
    make_query,
    wait_until_answers,
)

# key=value, the value bare or quoted with backslash escapes (what logfmt parsers accept)
LOGFMT_PAIR = re.compile(r'([a-z_]+)=("(?:[^"\\]|\\.)*"|[^ "=]+)')
UNESCAPE = {"n": "\n", "r": "\r", "t": "\t"}


def parse_logfmt(line):
    """The pairs of one line, or None when some of the line is not key=value."""
    pos, pairs = 0, {}
    while pos < len(line):
        m = LOGFMT_PAIR.match(line, pos)
        if m is None:
            return None
        value = m.group(2)
        if value.startswith('"'):
            value = re.sub(r"\\(.)", lambda e: UNESCAPE.get(e.group(1), e.group(1)), value[1:-1])
        pairs[m.group(1)] = value
        pos = m.end()
        if pos < len(line):
            if line[pos] != " ":
                return None
            pos += 1
    return pairs


def events(proc, name):
    """The parsed lines of event name in proc's log (every line must parse)."""
    found = []
    for line in proc.stderr_text(limit=1 << 20).splitlines():
        if not line.startswith("ts="):
            continue
        pairs = parse_logfmt(line)
        assert pairs is not None, "not logfmt: %r" % line
        if pairs.get("event") == name:
            found.append(pairs)
    return found



def start_nsd_at(tmp, port):
    """NSD serving the upstream zones on 127.0.0.1:port (the port must be free)."""
    tmp = Path(tmp)
    tmp.mkdir(parents=True, exist_ok=True)
    conf = NSD_CONF.format(host="127.0.0.1", port=port, zonesdir=DATA / "upstream", tmp=tmp)
    for zone, path in UPSTREAM_ZONES.items():
        conf += 'zone:\n    name: "%s"\n    zonefile: "%s"\n' % (zone, path)
    (tmp / "nsd.conf").write_text(conf)
    proc = Proc("nsd-%s" % tmp.name, [NSD, "-d", "-c", tmp / "nsd.conf"], tmp)
    wait_until_answers(proc, Client("127.0.0.1", port), "www.example.com")
    return proc


def ask_new_names(port, count):
    """count queries for names nobody asked before (never cached), each from a new socket (a new
    source port, so that they spread over the workers); answers are not waited for long."""
    for _ in range(count):
        q = make_query("%s.example.com" % uuid.uuid4().hex[:12])
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(0.3)
            s.sendto(q.to_wire(), ("127.0.0.1", port))
            try:
                s.recv(4096)
            except socket.timeout:
                pass


def test_an_upstream_down_and_back_is_logged_once_for_all_workers(tmp_path, start_daemon):
    nsd_port = free_port(("127.0.0.1",))
    nsd = start_nsd_at(tmp_path / "nsd1", nsd_port)
    upstream = "127.0.0.1:%d" % nsd_port

    def argv(port):
        return [VPCDNS, "--listen", "127.0.0.1:%d" % port, "--upstream", upstream, "--workers", "4",
                "--snapshot", SNAPSHOT]

    d = start_daemon(upstream, argv=argv)
    ask_new_names(d.port, 8)
    nsd.stop()

    # Every worker that gets queries sees the server fail and avoids it.
    for _ in range(40):
        ask_new_names(d.port, 10)
        if events(d.proc, "upstream_down"):
            break
    ask_new_names(d.port, 160)  # the other workers find out too
    down = events(d.proc, "upstream_down")
    assert len(down) == 1, d.proc.stderr_text()
    assert down[0]["server"] == upstream
    assert down[0]["reason"] in ("refused", "error", "timeout")
    assert down[0]["level"] == "warn"

    nsd = start_nsd_at(tmp_path / "nsd2", nsd_port)
    try:
        # Dead servers are probed at most once a second per worker, doubling: bounded.
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not events(d.proc, "upstream_up"):
            ask_new_names(d.port, 10)
            time.sleep(0.2)
        up = events(d.proc, "upstream_up")
        assert len(up) == 1, d.proc.stderr_text()
        assert up[0]["server"] == upstream
        ask_new_names(d.port, 20)
        assert len(events(d.proc, "upstream_up")) == 1, d.proc.stderr_text()
        assert len(events(d.proc, "upstream_down")) == 1, d.proc.stderr_text()
    finally:
        nsd.stop()


def test_a_reload_says_what_changed(tmp_path, nsd, start_daemon):
    snap, zone = vdtest.copy_reload_data(tmp_path)
    upstream = "%s:%d" % nsd

    def argv(port):
        return [VPCDNS, "--listen", "127.0.0.1:%d" % port, "--upstream", upstream,
                "--snapshot", snap, "--zone", zone]

    d = start_daemon(upstream, argv=argv)
    start = events(d.proc, "start")[0]
    zone.write_text(zone.read_text() + "added IN A 192.0.2.2\nmore IN A 192.0.2.3\n")
    d.proc.p.send_signal(signal.SIGHUP)
    assert vdtest.wait_for(lambda: events(d.proc, "reload_done"), 5), d.proc.stderr_text()
    reloaded = events(d.proc, "reloaded")
    assert len(reloaded) == 1, d.proc.stderr_text()
    r = reloaded[0]
    names, records = int(start["names"]), int(start["records"])
    assert r["names"] == "%d->%d" % (names, names + 2)
    assert r["records"] == "%d->%d" % (records, records + 2)
    assert r["endpoints"] == "%s->%s" % (start["endpoints"], start["endpoints"])
    assert r["zones"] == "%s->%s" % (start["zones"], start["zones"])


def test_a_failed_reload_quotes_its_error(tmp_path, nsd, start_daemon):
    zone = tmp_path / 'we"ird\\name.zone'
    zone.write_text("$ORIGIN w.example.\n$TTL 300\n@ IN SOA ns hostmaster 1 7200 900 1209600 60\n")
    upstream = "%s:%d" % nsd

    def argv(port):
        return [VPCDNS, "--listen", "127.0.0.1:%d" % port, "--upstream", upstream, "--zone", zone]

    d = start_daemon(upstream, argv=argv, probe="w.example.")
    zone.write_text('$ORIGIN w.example.\n$TTL 300\n@ IN SOA ns hostmaster 1 7200 900 1209600 60\n'
                    'x IN A "not an address"\n')
    d.proc.p.send_signal(signal.SIGHUP)
    assert vdtest.wait_for(lambda: events(d.proc, "reload_failed"), 5), d.proc.stderr_text()
    failed = events(d.proc, "reload_failed")[0]
    assert str(zone) in failed["error"], failed
    assert failed["kept"] == "previous"
