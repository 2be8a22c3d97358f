"""Side by side with Unbound: the same questions sent to vpcdns and to Unbound, both
forwarding to one NSD that serves an unsigned zone, a zone signed with NSEC and one signed
with NSEC3. For names vpcdns holds no data for, a forwarding cache must give what a
well-known forwarding cache gives: the same rcode, the same answer records (TTLs aside), the
same kind of denial in the authority section, on the first ask and from the cache.

Unbound runs without validation (module-config "iterator"), as vpcdns does not validate: both
relay what the upstream signed. Two differences are legitimate, and handled as such:
- ANY: Unbound answers it from whatever RRsets of the name its cache holds, while a forwarder
  relays what the upstream says (NSD answers ANY with one RRset, RFC 8482). For ANY the
  reference is therefore NSD's own answer: the same rcode, records and denial.
- RD=0: Unbound (allow_snoop) answers a non-recursive question from its cache only and
  otherwise returns a referral from it; vpcdns asks its upstream, as it does for every
  question. Where Unbound gives such a referral, there is nothing to compare.
Every other difference fails the test and is printed in full."""

import shutil
import subprocess
import time
from pathlib import Path

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import pytest

import vdtest

ZONES = vdtest.DATA / "sidebyside"
UNBOUND = shutil.which("unbound") or "/usr/sbin/unbound"
KEYGEN = shutil.which("ldns-keygen") or "/usr/bin/ldns-keygen"
SIGNZONE = shutil.which("ldns-signzone") or "/usr/bin/ldns-signzone"

# (zone, sign with): None = unsigned, "nsec", "nsec3".
ZONE_SET = (("plain.example", None), ("signed.example", "nsec"), ("nsec3.example", "nsec3"))

# Owner (relative to the zone; "@" is the apex) and the types asked for it.
NAMES = {
    "@": ("A", "AAAA", "MX", "TXT", "NS", "SOA", "ANY", "HINFO", "DNSKEY"),
    "www": ("A", "AAAA", "ANY", "MX", "CNAME"),
    "alias": ("A", "AAAA", "CNAME", "ANY", "TXT"),
    "chain1": ("A", "AAAA"),
    "out": ("A", "CNAME"),
    "x.wild": ("A", "TXT", "AAAA", "ANY"),
    "a.b.wild": ("A",),
    "_sip._udp": ("SRV", "A"),
    "ptr": ("PTR",),
    "caa": ("CAA", "A"),
    "redir": ("DNAME", "A"),
    "www.redir": ("A", "AAAA", "CNAME", "ANY"),
    "nx": ("A", "AAAA", "ANY", "TXT"),
    "nx.www": ("A",),
    "big": ("TXT",),
    "a-rather-long-label-to-show-what-name-compression-saves.many": ("A",),
}

# Names outside the three zones: special-use names (RFC 6761) that a recursive service
# answers itself, and a zone NSD does not serve (it answers REFUSED).
OTHER_NAMES = {
    "localhost.": ("A", "AAAA", "MX"),
    "www.localhost.": ("A",),
    "1.0.0.127.in-addr.arpa.": ("PTR",),
    "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.ip6.arpa.": ("PTR",),
    "x.invalid.": ("A",),
    "www.elsewhere.example.": ("A",),
}

# How a question is sent: (label, keyword arguments of make_query, tcp).
VARIANTS = (
    ("edns", dict(edns=True, payload=1232), False),
    ("do", dict(dnssec=True, payload=1232), False),
    ("noedns", dict(), False),
    ("tcp-do", dict(dnssec=True, payload=1232), True),
    ("cd", dict(dnssec=True, payload=1232, cd=True), False),
    ("rd0", dict(edns=True, payload=1232, rd=False), False),
)

UNBOUND_CONF = """server:
    interface: 127.0.0.1@{port}
    port: {port}
    do-ip6: no
    username: ""
    chroot: ""
    directory: "{tmp}"
    pidfile: "{tmp}/unbound.pid"
    use-syslog: no
    logfile: "{tmp}/unbound.log"
    verbosity: 1
    num-threads: 1
    module-config: "iterator"
    do-not-query-localhost: no
    access-control: 127.0.0.0/8 allow_snoop
    qname-minimisation: no
    minimal-responses: yes
    harden-glue: yes
    prefetch: no
    serve-expired: no
    edns-buffer-size: 1232
remote-control:
    control-enable: no
forward-zone:
    name: "."
    forward-addr: 127.0.0.1@{upstream}
"""


def sign(tmp, zone, how):
    """Signs tmp/zone.zone with a fresh ECDSA key; returns the signed file's name."""
    key = subprocess.run([KEYGEN, "-a", "ECDSAP256SHA256", "-k", zone], cwd=tmp, check=True,
                         capture_output=True, text=True, timeout=30).stdout.strip()
    args = [SIGNZONE]
    if how == "nsec3":
        args += ["-n", "-s", "", "-t", "0"]  # RFC 9276: no salt, no extra iterations
    args += ["-o", zone, zone + ".zone", key]
    subprocess.run(args, cwd=tmp, check=True, capture_output=True, text=True, timeout=30)
    return zone + ".zone.signed"


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    """(vpcdns client, Unbound client), both forwarding to one NSD with the three zones."""
    for tool in (UNBOUND, KEYGEN, SIGNZONE):
        if not Path(tool).exists():
            pytest.fail("%s is missing: contrib/deps.sh installs it" % tool)
    tmp = tmp_path_factory.mktemp("sbs")
    zones = tmp / "zones"
    zones.mkdir()
    conf = vdtest.NSD_CONF.format(host="127.0.0.1", port="{port}", zonesdir=zones, tmp=tmp)
    for zone, how in ZONE_SET:
        shutil.copy(ZONES / (zone + ".zone"), zones / (zone + ".zone"))
        path = sign(zones, zone, how) if how else zone + ".zone"
        conf += 'zone:\n    name: "%s"\n    zonefile: "%s"\n' % (zone, path)
    nsd_port = vdtest.free_port(("127.0.0.1",))
    (tmp / "nsd.conf").write_text(conf.replace("{port}", str(nsd_port)))
    nsd = vdtest.Proc("nsd-sbs", [vdtest.NSD, "-d", "-c", tmp / "nsd.conf"], tmp)
    procs = [nsd]
    try:
        vdtest.wait_until_answers(nsd, vdtest.Client("127.0.0.1", nsd_port), "www.plain.example")
        ub_port = vdtest.free_port(("127.0.0.1",))
        (tmp / "unbound.conf").write_text(UNBOUND_CONF.format(port=ub_port, tmp=tmp,
                                                               upstream=nsd_port))
        unbound = vdtest.Proc("unbound", [UNBOUND, "-d", "-c", tmp / "unbound.conf"], tmp)
        procs.append(unbound)
        vdtest.wait_until_answers(unbound, vdtest.Client("127.0.0.1", ub_port), "www.plain.example")
        upstream = "127.0.0.1:%d" % nsd_port
        d = vdtest.start_vpcdns(
            tmp, upstream, probe="www.plain.example",
            argv=lambda p: vdtest.vpcdns_argv(p, upstream, snapshot=None, zone=None))
        procs.append(d.proc)
        yield d.v4, vdtest.Client("127.0.0.1", ub_port), vdtest.Client("127.0.0.1", nsd_port)
    finally:
        for p in reversed(procs):
            p.stop()


def cases():
    names = dict(OTHER_NAMES)
    for zone, _ in ZONE_SET:
        for owner, types in NAMES.items():
            names[zone + "." if owner == "@" else "%s.%s." % (owner, zone)] = types
    return [(name, rdtype, label, kw, tcp) for name, types in names.items() for rdtype in types
            for label, kw, tcp in VARIANTS]


def rrset_lines(section):
    """The records of a section as sorted text lines, TTLs left out, names lower-cased."""
    lines = []
    for rrset in section:
        for rd in rrset:
            lines.append("%s %s %s" % (rrset.name.to_text().lower(),
                                       dns.rdatatype.to_text(rrset.rdtype), rd.to_text()))
    return sorted(lines)


def owner_types(section):
    return sorted({"%s %s" % (r.name.to_text().lower(), dns.rdatatype.to_text(r.rdtype))
                   for r in section})


def normalise(msg):
    """What must agree: rcode, TC, the answer records; for an answer without records (a denial
    or a referral), the owners and types of the authority section."""
    if msg is None:
        return {"response": None}
    tc = bool(msg.flags & dns.flags.TC)
    out = {"rcode": dns.rcode.to_text(msg.rcode()), "tc": tc}
    if tc:
        return out  # a truncated answer's sections are whatever fitted
    out["answer"] = rrset_lines(msg.answer)
    if not msg.answer:
        out["authority"] = owner_types(msg.authority)
    return out


def ask(client, name, rdtype, kw, tcp):
    kw = dict(kw)
    cd = kw.pop("cd", False)
    q = vdtest.make_query(name, rdtype, **kw)
    if cd:
        q.flags |= dns.flags.CD
    try:
        return client.send(q, tcp=tcp, timeout=3.0)
    except Exception:  # a timeout is a difference like any other
        return None


def is_referral(norm):
    """An answer without records whose authority holds only NS records."""
    auth = norm.get("authority")
    return (norm.get("rcode") == "NOERROR" and norm.get("answer") == [] and bool(auth)
            and all(line.endswith(" NS") for line in auth))


def test_vpcdns_answers_like_unbound(servers):
    vpcdns, unbound, nsd = servers
    diffs = []
    n = skipped = 0
    for name, rdtype, label, kw, tcp in cases():
        reference = nsd if rdtype == "ANY" else unbound
        ub = normalise(ask(reference, name, rdtype, kw, tcp))
        if label == "rd0" and reference is unbound and is_referral(ub):
            skipped += 1
            continue
        for attempt in ("first", "cached"):
            got = normalise(ask(vpcdns, name, rdtype, kw, tcp))
            n += 1
            if got != ub:
                diffs.append("%s %s [%s, %s]\n  vpcdns:  %s\n  %s: %s"
                             % (name, rdtype, label, attempt, got,
                                "nsd" if reference is nsd else "unbound", ub))
    assert n >= 1500 and skipped < 100, "the comparison asks too little: %d questions, %d " \
        "RD=0 referrals skipped" % (n, skipped)
    assert not diffs, "%d of %d answers differ from Unbound's:\n%s" % (
        len(diffs), n, "\n".join(diffs))
