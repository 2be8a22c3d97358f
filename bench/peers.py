#!/usr/bin/python3
"""bench/peers.py — turns the local records of vpcdns into the same data for its peers.

Reads the zone-file text that `vpcdns --snapshot DIR [--zone FILE] --dump` prints (one
record per line: `owner TTL IN TYPE rdata`, tab or space separated) and writes, for each
option given:

  --unbound OUT      `local-data:` lines for Unbound's server: clause (every type, owner
                     names verbatim); a wildcard *.P becomes a `redirect` local-zone
                     at P when that gives the same answers
  --dnsmasq OUT      a dnsmasq config fragment: host-record= (A/AAAA), cname=, txt-record=,
                     mx-host= and srv-host= lines; address=/P/ for a wildcard *.P when
                     that gives the same answers
  --kresd-hosts OUT  a hosts file for Knot Resolver's hints module (A and AAAA only)
  --names OUT        one `name A` line per owner that has an A record (no wildcards): the
                     query file of the local scenario of bench/compare.sh

`peers.py config SERVER --port P --dir DIR --local FILE [options]` writes instead the
configuration of one peer (unbound, dnsmasq or kresd) listening on 127.0.0.1:P only, as
DIR/SERVER.conf, with DIR as its working directory and FILE (the matching output above) as
its local data. Options (each absent: the server's own default, or nothing):

  --upstream ADDR@PORT  the forwarder for every other name; without it Unbound and kresd
                        forward to the dead 127.0.0.1@1, kresd's root priming and time-skew
                        probe are unloaded, and dnsmasq has no server
  --cache-mb N          cache size: Unbound msg-cache N MB and rrset-cache 2N MB, kresd an
                        N MB cache in DIR/kresd-cache
  --rcvbuf-mb N         Unbound's so-rcvbuf
  --quiet               dnsmasq logs to DIR/dnsmasq.log, kresd logs warnings only

Used by bench/compare.sh and bench/scale.sh (which imports write_config). Errors name
file:line and exit 1. This file only writes text; it starts nothing and sends nothing.
"""

import argparse
import sys

# SOA and NS of the hidden zones vpcdns builds (sqs.us-east-1.amazonaws.com. and the like)
# are zone metadata: they make vpcdns answer NXDOMAIN/NODATA under those apexes, but no
# client of the benchmark asks for them, so they are not translated.
SKIPPED_TYPES = {"SOA", "NS"}


class DumpError(Exception):
    pass


class Record:
    __slots__ = ("owner", "ttl", "rtype", "rdata", "where")

    def __init__(self, owner, ttl, rtype, rdata, where):
        self.owner = owner
        self.ttl = ttl
        self.rtype = rtype
        self.rdata = rdata
        self.where = where


def parse_dump(path):
    """Returns the records of the dump at path, in file order."""
    records = []
    try:
        handle = open(path, encoding="utf-8")
    except OSError as err:
        raise DumpError(f"{path}: cannot open: {err.strerror}") from err
    with handle:
        for number, line in enumerate(handle, 1):
            where = f"{path}:{number}"
            text = line.strip()
            if not text or text.startswith(";"):
                continue
            fields = text.split(None, 4)
            if len(fields) < 5:
                raise DumpError(f"{where}: expected 'owner TTL IN TYPE rdata', "
                                f"got {len(fields)} fields")
            owner, ttl, klass, rtype, rdata = fields
            if not owner.endswith("."):
                raise DumpError(f"{where}: owner {owner!r} is not absolute "
                                "(expected a trailing dot)")
            if not ttl.isdigit() or int(ttl) > 2**31 - 1:
                raise DumpError(f"{where}: TTL {ttl!r} is not a number of "
                                "seconds (0..2147483647)")
            if klass.upper() != "IN":
                raise DumpError(f"{where}: class {klass!r}, expected IN")
            records.append(Record(owner, int(ttl), rtype.upper(), rdata.strip(),
                                  where))
    return records


def served(records):
    return [r for r in records if r.rtype not in SKIPPED_TYPES]


def bare(name):
    """A name without its trailing dot (dnsmasq and hosts files want that form)."""
    return name[:-1] if name.endswith(".") and name != "." else name


def is_wildcard(name):
    return name.startswith("*.")


HEADER = ("written by bench/peers.py from {dump}\n"
          "# SOA and NS records of the hidden zones are left out: they are zone metadata,\n"
          "# not names a client asks for")


def unbound_quote(text, where):
    if "'" not in text:
        return f"'{text}'"
    if '"' not in text:
        return f'"{text}"'
    raise DumpError(f"{where}: record holds both quote characters; Unbound's config cannot "
                    "quote it")


def wildcard_parents(records):
    """({parent: wildcard owner} of the wildcards *.P that a whole-subtree answer at P
    reproduces (no other name below P, and P holds nothing or the same records), [the
    records of the other wildcards])."""
    rrsets = {}
    for r in served(records):
        rrsets.setdefault(r.owner.lower(), set()).add((r.rtype, r.rdata.lower()))
    # names_below[P]: how many owner names lie strictly below P
    names_below = {}
    for owner in rrsets:
        labels = owner.split(".")
        for i in range(1, len(labels) - 1):
            suffix = ".".join(labels[i:])
            names_below[suffix] = names_below.get(suffix, 0) + 1
    parents = {}
    left_out = []
    for r in served(records):
        if not is_wildcard(r.owner):
            continue
        parent = r.owner[2:]
        key, wild = parent.lower(), r.owner.lower()
        if parent in parents:
            continue
        own = rrsets.get(key)
        if names_below.get(key, 0) > 1 or (own and own != rrsets[wild]):
            left_out.append(r)
        else:
            parents[parent] = r.owner
    return parents, left_out


def write_unbound(records, dump):
    lines = [f"# {HEADER.format(dump=dump)}",
             "# Unbound's local-data has no wildcards. A wildcard *.P becomes a redirect zone",
             "# at P (P and every name below it answer with P's data) when no other name is",
             "# below P and P holds nothing or the same records; otherwise it is left out."]
    parents, left_out = wildcard_parents(records)
    for r in left_out:
        lines.append(f"# wildcard left out (other data at or below {r.owner[2:]}): {r.where}")
    owners = {r.owner.lower() for r in served(records)}
    for parent, wild in parents.items():
        lines.append(f"local-zone: {unbound_quote(parent, dump)} redirect")
        if parent.lower() in owners:
            continue  # P's own local-data below is the answer
        for w in served(records):
            if w.owner == wild:
                text = f"{parent} {w.ttl} IN {w.rtype} {w.rdata}"
                lines.append(f"local-data: {unbound_quote(text, w.where)}")
    for r in served(records):
        if is_wildcard(r.owner):
            continue
        text = f"{r.owner} {r.ttl} IN {r.rtype} {r.rdata}"
        lines.append(f"local-data: {unbound_quote(text, r.where)}")
    return lines


def split_quoted(rdata, where):
    """The character-strings of a TXT rdata ("a" "b c") as a list of str."""
    strings = []
    i = 0
    while i < len(rdata):
        if rdata[i].isspace():
            i += 1
            continue
        if rdata[i] != '"':
            end = i
            while end < len(rdata) and not rdata[end].isspace():
                end += 1
            strings.append(rdata[i:end])
            i = end
            continue
        i += 1
        chunk = []
        while i < len(rdata) and rdata[i] != '"':
            if rdata[i] == "\\" and i + 1 < len(rdata):
                i += 1
            chunk.append(rdata[i])
            i += 1
        if i >= len(rdata):
            raise DumpError(f"{where}: unterminated string in TXT rdata")
        i += 1
        strings.append("".join(chunk))
    return strings


def write_dnsmasq(records, dump):
    lines = [f"# {HEADER.format(dump=dump)}",
             "# dnsmasq has no wildcard records: a wildcard *.P of addresses becomes",
             "# address=/P/ (P and every name below it) when no other name is below P and P",
             "# holds nothing or the same records; otherwise it is left out. cname= needs a",
             "# target that dnsmasq knows locally."]
    parents, left_out = wildcard_parents(records)
    by_address = set()
    for parent, wild in parents.items():
        wild_records = [w for w in served(records) if w.owner == wild]
        if any(w.rtype not in ("A", "AAAA") for w in wild_records):
            left_out.extend(wild_records[:1])
            continue
        by_address.add(parent.lower())
        for w in wild_records:
            lines.append(f"address=/{bare(parent)}/{w.rdata}")
    for r in left_out:
        lines.append(f"# wildcard left out: {r.where}")
    for r in served(records):
        if is_wildcard(r.owner):
            continue
        if r.owner.lower() in by_address and r.rtype in ("A", "AAAA"):
            continue  # answered by address=/P/
        name = bare(r.owner)
        if r.rtype in ("A", "AAAA"):
            lines.append(f"host-record={name},{r.rdata},{r.ttl}")
        elif r.rtype == "CNAME":
            lines.append(f"cname={name},{bare(r.rdata)},{r.ttl}")
        elif r.rtype == "TXT":
            strings = split_quoted(r.rdata, r.where)
            if any('"' in s or "," in s for s in strings):
                lines.append(f"# skipped (quote or comma in TXT): {r.where}")
                continue
            quoted = ",".join(f'"{s}"' for s in strings)
            lines.append(f"txt-record={name},{quoted}")
        elif r.rtype == "MX":
            fields = r.rdata.split()
            if len(fields) != 2:
                raise DumpError(f"{r.where}: MX rdata {r.rdata!r}, expected "
                                "'PREFERENCE HOST'")
            lines.append(f"mx-host={name},{bare(fields[1])},{fields[0]}")
        elif r.rtype == "SRV":
            fields = r.rdata.split()
            if len(fields) != 4:
                raise DumpError(f"{r.where}: SRV rdata {r.rdata!r}, expected "
                                "'PRIORITY WEIGHT PORT TARGET'")
            prio, weight, port, target = fields
            lines.append(f"srv-host={name},{bare(target)},{port},{prio},{weight}")
        else:
            lines.append(f"# skipped ({r.rtype} has no dnsmasq option here): "
                         f"{r.where}")
    return lines


def write_kresd_hosts(records, dump):
    lines = [f"# {HEADER.format(dump=dump)}",
             "# Knot Resolver's hints module serves A and AAAA only, without wildcards."]
    for r in served(records):
        if r.rtype in ("A", "AAAA") and not is_wildcard(r.owner):
            lines.append(f"{r.rdata} {bare(r.owner)}")
    return lines


def write_names(records, dump):
    seen = set()
    lines = []
    for r in served(records):
        if r.rtype == "A" and not is_wildcard(r.owner):
            key = r.owner.lower()
            if key not in seen:
                seen.add(key)
                lines.append(f"{r.owner} A")
    return lines


def server_config(server, port, rundir, local, upstream=None, cache_mb=None, rcvbuf_mb=None,
                  quiet=False):
    """The lines of SERVER's config: see the module's text for the arguments. upstream is
    "ADDR@PORT" or None."""
    if server == "unbound":
        lines = ["# written by bench/peers.py: Unbound as a forwarding cache, like vpcdns",
                 "server:",
                 "    num-threads: 1",
                 f"    interface: 127.0.0.1@{port}",
                 f"    port: {port}",
                 "    do-ip6: no",
                 "    access-control: 127.0.0.0/8 allow",
                 "    do-not-query-localhost: no",
                 '    module-config: "iterator"',
                 '    chroot: ""',
                 '    username: ""',
                 '    pidfile: ""',
                 f'    directory: "{rundir}"',
                 "    use-syslog: no",
                 '    logfile: ""',
                 "    verbosity: 0"]
        if cache_mb is not None:
            lines += [f"    msg-cache-size: {cache_mb}m",
                      f"    rrset-cache-size: {2 * cache_mb}m"]
        if rcvbuf_mb is not None:
            lines += ["    # the same receive buffer vpcdns asks for",
                      f"    so-rcvbuf: {rcvbuf_mb}m"]
        lines += [f'    include: "{local}"',
                  "forward-zone:",
                  '    name: "."',
                  f"    forward-addr: {upstream or '127.0.0.1@1'}"]
        return lines
    if server == "dnsmasq":
        lines = ["# written by bench/peers.py",
                 f"port={port}",
                 "listen-address=127.0.0.1",
                 "bind-interfaces",
                 "no-resolv",
                 "no-hosts",
                 "no-poll"]
        if upstream:
            lines.append(f"server={upstream.replace('@', '#')}")
        lines += ["cache-size=10000", "pid-file="]
        if quiet:
            lines.append(f"log-facility={rundir}/dnsmasq.log")
        lines.append(f"conf-file={local}")
        return lines
    if server == "kresd":
        lines = ["-- written by bench/peers.py: Knot Resolver 5 as a forwarding cache, like vpcdns"]
        if not upstream:
            lines += ["-- no traffic beyond loopback: no priming, no time-skew probe, a dead "
                      "forwarder",
                      "modules.unload('priming')",
                      "modules.unload('detect_time_skew')"]
        lines += [f"net.listen('127.0.0.1', {port}, {{ kind = 'dns' }})",
                  "trust_anchors.remove('.')",
                  "modules.load('hints > iterate')",
                  f"hints.add_hosts('{local}')",
                  f"policy.add(policy.all(policy.FORWARD('{upstream or '127.0.0.1@1'}')))"]
        if cache_mb is not None:
            lines.append(f"cache.open({cache_mb} * MB, 'lmdb://{rundir}/kresd-cache')")
        if quiet:
            lines.append("log_level('warning')")
        return lines
    raise ValueError(f"unknown server {server!r}")


def write_config(server, port, rundir, local, **options):
    """Writes rundir/SERVER.conf (server_config's lines); returns its path."""
    path = f"{rundir}/{server}.conf"
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("\n".join(server_config(server, port, rundir, local, **options)) + "\n")
    return path


def main_config(argv):
    parser = argparse.ArgumentParser(
        prog="peers.py config",
        description="Write the config of one peer listening on 127.0.0.1:PORT as "
        "DIR/SERVER.conf.")
    parser.add_argument("server", choices=("unbound", "dnsmasq", "kresd"))
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--dir", required=True, help="working directory; the config goes here")
    parser.add_argument("--local", required=True, metavar="FILE",
                        help="local data: the --unbound, --dnsmasq or --kresd-hosts output")
    parser.add_argument("--upstream", metavar="ADDR@PORT",
                        help="forwarder (default: none; 127.0.0.1@1 where one is needed)")
    parser.add_argument("--cache-mb", type=int, metavar="N")
    parser.add_argument("--rcvbuf-mb", type=int, metavar="N")
    parser.add_argument("--quiet", action="store_true",
                        help="dnsmasq logs to DIR/dnsmasq.log, kresd warnings only")
    args = parser.parse_args(argv)
    if args.upstream is not None and "@" not in args.upstream:
        parser.error("--upstream takes ADDR@PORT")
    try:
        write_config(args.server, args.port, args.dir, args.local, upstream=args.upstream,
                     cache_mb=args.cache_mb, rcvbuf_mb=args.rcvbuf_mb, quiet=args.quiet)
    except OSError as err:
        print(f"peers.py: {args.dir}/{args.server}.conf: cannot write: {err.strerror}",
              file=sys.stderr)
        return 1
    return 0


def main(argv):
    if argv[:1] == ["config"]:
        return main_config(argv[1:])
    parser = argparse.ArgumentParser(
        description="Translate `vpcdns --dump` output into Unbound, dnsmasq and "
        "Knot Resolver data.")
    parser.add_argument("--dump", required=True, metavar="FILE",
                        help="output of vpcdns --snapshot DIR --dump")
    parser.add_argument("--unbound", metavar="OUT", help="local-data: lines")
    parser.add_argument("--dnsmasq", metavar="OUT", help="dnsmasq config fragment")
    parser.add_argument("--kresd-hosts", metavar="OUT", help="hosts file for hints")
    parser.add_argument("--names", metavar="OUT", help="'name A' query file")
    args = parser.parse_args(argv)
    try:
        records = parse_dump(args.dump)
        if args.names and not any(r.rtype == "A" for r in records):
            raise DumpError(f"{args.dump}: no A record in the dump")
        for path, writer in ((args.unbound, write_unbound),
                             (args.dnsmasq, write_dnsmasq),
                             (args.kresd_hosts, write_kresd_hosts),
                             (args.names, write_names)):
            if path is None:
                continue
            lines = writer(records, args.dump)
            try:
                with open(path, "w", encoding="utf-8") as handle:
                    handle.write("\n".join(lines) + "\n")
            except OSError as err:
                raise DumpError(f"{path}: cannot write: {err.strerror}") from err
    except DumpError as err:
        print(f"peers.py: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
