"""SIGHUP reloads the snapshot directories and zone files: a good reload changes the answers
without a restart, a broken one is logged with the file and place and the old data keeps
being served."""

import signal
import time

import dns.rcode

import vdtest
from vdtest import SNAPSHOT, VPCDNS, addresses, describe, rcode

SQS = "sqs.eu-west-1.amazonaws.com."
OLD_IP = "10.1.1.10"
NEW_IP = "10.9.9.99"


def start_with_copy(tmp_path, nsd, start_daemon):
    snap, zone = vdtest.copy_reload_data(tmp_path)

    def argv(port):
        return [
            VPCDNS,
            "--listen",
            "127.0.0.1:%d" % port,
            "--upstream",
            "%s:%d" % nsd,
            "--snapshot",
            snap,
            "--zone",
            zone,
        ]

    return start_daemon("%s:%d" % nsd, argv=argv), snap, zone



def test_reload_picks_up_new_data(tmp_path, nsd, start_daemon):
    d, snap, zone = start_with_copy(tmp_path, nsd, start_daemon)
    assert OLD_IP in addresses(d.v4.query(SQS, "A"), SQS)

    enis = snap / "describe-network-interfaces.json"
    enis.write_text(enis.read_text().replace('"%s"' % OLD_IP, '"%s"' % NEW_IP))
    zone.write_text(zone.read_text() + "added IN A 192.0.2.2\n")
    d.proc.p.send_signal(signal.SIGHUP)

    assert vdtest.wait_for(lambda: NEW_IP in addresses(d.v4.query(SQS, "A"), SQS)), describe(
        d.v4.query(SQS, "A")
    )
    assert OLD_IP not in addresses(d.v4.query(SQS, "A"), SQS)
    msg = d.v4.query("added.reload.example.", "A")
    assert addresses(msg, "added.reload.example.") == ["192.0.2.2"], describe(msg)
    assert "event=reload_done" in d.proc.stderr_text()
    assert d.proc.alive()


def test_broken_reload_keeps_serving_the_old_data(tmp_path, nsd, start_daemon):
    d, snap, zone = start_with_copy(tmp_path, nsd, start_daemon)
    before = sorted(addresses(d.v4.query(SQS, "A"), SQS))
    assert len(before) == 3

    endpoints = snap / "describe-vpc-endpoints.json"
    endpoints.write_text(endpoints.read_text()[:-40])  # a capture cut short
    d.proc.p.send_signal(signal.SIGHUP)
    assert vdtest.wait_for(lambda: "event=reload_failed" in d.proc.stderr_text()), d.proc.stderr_text()
    log = d.proc.stderr_text()
    assert "describe-vpc-endpoints.json" in log, log

    msg = d.v4.query(SQS, "A")
    assert rcode(msg) == dns.rcode.NOERROR, describe(msg)
    assert sorted(addresses(msg, SQS)) == before
    # the zone file loaded with the old data still answers, and the server still forwards
    msg = d.v4.query("host.reload.example.", "A")
    assert addresses(msg, "host.reload.example.") == ["192.0.2.1"], describe(msg)
    msg = d.v4.query("www.example.com.", "A")
    assert addresses(msg, "www.example.com.") == ["192.0.2.10"], describe(msg)
    assert d.proc.alive()
