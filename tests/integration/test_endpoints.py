"""Endpoint names from an AWS snapshot, row by row of docs/endpoint-dns.md, against
tests/data/integ/snapshot (eu-west-1, nine endpoints). Upstream answers are all in
198.51.100.0/24 (tests/data/integ/upstream/amazonaws.com.zone)."""

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import pytest

from vdtest import addresses, answer_rrset, describe, make_query, raw_udp, soa_of

R = "eu-west-1"
VPCE = R + ".vpce.amazonaws.com."

SQS_ID = "vpce-0a1b2c3d4e5f60718-k2j4h6g8"
SQS_REGIONAL = "%s.sqs.%s" % (SQS_ID, VPCE)
SQS_ZONAL = {az: "%s-%s%s.sqs.%s" % (SQS_ID, R, az, VPCE) for az in "abc"}
SQS_PRIVATE = "sqs.%s.amazonaws.com." % R
SQS_IPS = {"a": "10.1.1.10", "b": "10.1.2.10", "c": "10.1.3.10"}

S3_ID = "vpce-0b2c3d4e5f6071829-x9y8z7w6"
S3_IPS = {"10.2.1.20", "10.2.2.20"}

ECR_ID = "vpce-0c3d4e5f607182930-m3n4b5v6"
ECR_REGIONAL = "%s.api.ecr.%s" % (ECR_ID, VPCE)
ECR_ZONAL_A = "%s-%sa.api.ecr.%s" % (ECR_ID, R, VPCE)
ECR_PRIVATE = "api.ecr.%s.amazonaws.com." % R
ECR_V4 = {"10.3.1.30", "10.3.2.30"}
ECR_V6 = {"2a05:d018:1:1::30", "2a05:d018:1:2::30"}

SSM_REGIONAL = "vpce-0d4e5f60718293a4b-q1w2e3r4.ssm.%s" % VPCE
SSM_PRIVATE = "ssm.%s.amazonaws.com." % R
SSM_V6 = {"2a05:d018:2:1::40", "2a05:d018:2:2::40"}

KMS_PRIVATE = "kms.%s.amazonaws.com." % R
KMS_ZONAL_B = "vpce-0e5f60718293a4b5c-t5y6u7i8-%sb.kms.%s" % (R, VPCE)

SVC_REGIONAL = "vpce-0f60718293a4b5c6d-p0o9i8u7.vpce-svc-0f1e2d3c4b5a69788.%s" % VPCE
SVC_PRIVATE = "api.partner.example."
SVC_IPS = {"10.6.1.60", "10.6.2.60"}

SNS_REGIONAL = "vpce-0293a4b5c6d7e8f90-z1x2c3v4.sns.%s" % VPCE


def q(client, name, rdtype="A", **kw):
    return client.query(name, rdtype, **kw)


def assert_answer(msg, name, rdtype, expected):
    assert msg.rcode() == dns.rcode.NOERROR, describe(msg)
    got = addresses(msg, name, rdtype)
    assert sorted(got) == sorted(expected), describe(msg)
    rrset = answer_rrset(msg, name, rdtype)
    assert rrset.ttl == 60, describe(msg)


def assert_nodata(msg, soa_owner):
    assert msg.rcode() == dns.rcode.NOERROR, describe(msg)
    assert msg.answer == [], describe(msg)
    soa = soa_of(msg)
    assert soa is not None, "NODATA without SOA:\n" + describe(msg)
    assert soa.name == dns.name.from_text(soa_owner), describe(msg)


# ---------------------------------------------------------------- §2 names


def test_regional_name_answers_every_eni(dns4):
    assert_answer(q(dns4, SQS_REGIONAL), SQS_REGIONAL, "A", SQS_IPS.values())


@pytest.mark.parametrize("az", "abc")
def test_zonal_name_answers_only_its_az(dns4, az):
    assert_answer(q(dns4, SQS_ZONAL[az]), SQS_ZONAL[az], "A", [SQS_IPS[az]])


def test_private_dns_name_answers_every_eni(dns4):
    assert_answer(q(dns4, SQS_PRIVATE), SQS_PRIVATE, "A", SQS_IPS.values())


def test_private_dns_off_still_serves_vpce_names_and_forwards_the_public_name(dns4):
    # sns: "State": "Available" (capitalised), PrivateDnsEnabled false, ENI type "interface"
    assert_answer(q(dns4, SNS_REGIONAL), SNS_REGIONAL, "A", ["10.9.1.90"])
    msg = q(dns4, "sns.%s.amazonaws.com" % R)
    assert addresses(msg, "sns.%s.amazonaws.com" % R) == ["198.51.100.3"], describe(msg)


@pytest.mark.parametrize(
    "name",
    [
        "my-bucket.s3.%s.amazonaws.com." % R,
        "a.b.c.s3.%s.amazonaws.com." % R,
        "bucket.%s.s3.%s" % (S3_ID, VPCE),
        "x.y.bucket.%s.s3.%s" % (S3_ID, VPCE),
    ],
)
def test_wildcard_answers_one_or_more_extra_labels(dns4, name):
    msg = q(dns4, name)
    # the answer is owned by the name asked, not by "*.…"
    assert_answer(msg, name, "A", S3_IPS)


def test_zonal_wildcard_answers_its_az(dns4):
    name = "bucket.%s-%sb.s3.%s" % (S3_ID, R, VPCE)
    assert_answer(q(dns4, name), name, "A", ["10.2.2.20"])


def test_s3_private_name_itself(dns4):
    name = "s3.%s.amazonaws.com." % R
    assert_answer(q(dns4, name), name, "A", S3_IPS)


# ---------------------------------------------------------------- §2 record types


def test_ipv4_endpoint_has_no_aaaa(dns4):
    assert_nodata(q(dns4, SQS_PRIVATE, "AAAA"), SQS_PRIVATE)


def test_ipv6_endpoint_answers_aaaa_only(dns4):
    assert_answer(q(dns4, SSM_PRIVATE, "AAAA"), SSM_PRIVATE, "AAAA", SSM_V6)
    assert_answer(q(dns4, SSM_REGIONAL, "AAAA"), SSM_REGIONAL, "AAAA", SSM_V6)
    # its ENIs hold IPv4 addresses too, but DnsRecordIpType ipv6 publishes none
    assert_nodata(q(dns4, SSM_PRIVATE, "A"), SSM_PRIVATE)
    assert_nodata(q(dns4, SSM_REGIONAL, "A"), R + ".vpce.amazonaws.com.")


def test_dualstack_from_ip_address_type_when_dns_options_absent(dns4):
    assert_answer(q(dns4, KMS_PRIVATE, "A"), KMS_PRIVATE, "A", {"10.5.1.50", "10.5.2.50"})
    assert_answer(
        q(dns4, KMS_PRIVATE, "AAAA"), KMS_PRIVATE, "AAAA", {"2a05:d018:3:1::50", "2a05:d018:3:2::50"}
    )
    assert_answer(q(dns4, KMS_ZONAL_B, "AAAA"), KMS_ZONAL_B, "AAAA", ["2a05:d018:3:2::50"])


def test_service_defined_a_on_all_names(dns4):
    for name in (ECR_REGIONAL, ECR_ZONAL_A, ECR_PRIVATE):
        msg = q(dns4, name, "A")
        want = ["10.3.1.30"] if name == ECR_ZONAL_A else ECR_V4
        assert_answer(msg, name, "A", want)


def test_service_defined_aaaa_on_vpce_names_only(dns4):
    assert_answer(q(dns4, ECR_REGIONAL, "AAAA"), ECR_REGIONAL, "AAAA", ECR_V6)
    assert_answer(q(dns4, ECR_ZONAL_A, "AAAA"), ECR_ZONAL_A, "AAAA", ["2a05:d018:1:1::30"])
    assert_nodata(q(dns4, ECR_PRIVATE, "AAAA"), ECR_PRIVATE)


# ---------------------------------------------------------------- endpoint services


def test_endpoint_service_private_name_is_cname_to_regional_name(dns4):
    msg = q(dns4, SVC_PRIVATE)
    assert msg.rcode() == dns.rcode.NOERROR, describe(msg)
    cname = answer_rrset(msg, SVC_PRIVATE, "CNAME")
    assert cname is not None, describe(msg)
    assert [r.target for r in cname] == [dns.name.from_text(SVC_REGIONAL)], describe(msg)
    assert cname.ttl == 60
    assert msg.answer[0] is cname, "CNAME must come first:\n" + describe(msg)
    assert_answer(msg, SVC_REGIONAL, "A", SVC_IPS)
    assert answer_rrset(msg, SVC_PRIVATE, "A") is None, describe(msg)


def test_endpoint_service_vpce_names(dns4):
    assert_answer(q(dns4, SVC_REGIONAL), SVC_REGIONAL, "A", SVC_IPS)


# ---------------------------------------------------------------- TTL and rotation


def test_rrset_order_rotates_across_responses(dns4):
    orders = set()
    for _ in range(10):
        got = addresses(q(dns4, SQS_PRIVATE), SQS_PRIVATE)
        assert sorted(got) == sorted(SQS_IPS.values())
        orders.add(tuple(got))
    assert len(orders) >= 2, "10 answers, always the same order %s" % (orders,)


# ---------------------------------------------------------------- §3 negative answers


def test_nxdomain_under_private_name_with_soa(dns4):
    name = "foo.sqs.%s.amazonaws.com." % R
    msg = q(dns4, name)
    assert msg.rcode() == dns.rcode.NXDOMAIN, describe(msg)
    assert msg.answer == []
    soa = soa_of(msg)
    assert soa is not None and soa.name == dns.name.from_text(SQS_PRIVATE), describe(msg)
    assert soa.ttl == 60 and soa[0].minimum == 60, describe(msg)


def test_nodata_mx_at_private_name_soa_ttl_and_minimum_60(dns4):
    msg = q(dns4, SQS_PRIVATE, "MX")
    assert_nodata(msg, SQS_PRIVATE)
    soa = soa_of(msg)
    assert soa.ttl == 60, describe(msg)
    assert soa[0].minimum == 60, describe(msg)


def test_soa_at_apex_answered(dns4):
    msg = q(dns4, SQS_PRIVATE, "SOA")
    assert msg.rcode() == dns.rcode.NOERROR, describe(msg)
    soa = answer_rrset(msg, SQS_PRIVATE, "SOA")
    assert soa is not None and len(soa) == 1, describe(msg)
    assert soa[0].minimum == 60 and soa.ttl == 60, describe(msg)


def test_ns_at_apex_answered(dns4):
    msg = q(dns4, SQS_PRIVATE, "NS")
    assert msg.rcode() == dns.rcode.NOERROR, describe(msg)
    ns = answer_rrset(msg, SQS_PRIVATE, "NS")
    assert ns is not None and len(ns) >= 1, describe(msg)


def test_any_at_local_name_returns_its_rrsets(dns4):
    msg = q(dns4, SQS_PRIVATE, "ANY", tcp=True)
    assert msg.rcode() == dns.rcode.NOERROR, describe(msg)
    assert sorted(addresses(msg, SQS_PRIVATE, "A")) == sorted(SQS_IPS.values()), describe(msg)
    assert all(r.name == dns.name.from_text(SQS_PRIVATE) for r in msg.answer), describe(msg)
    # ANY at a name that exists only upstream would carry 198.51.100.x: never forwarded
    msg = q(dns4, SQS_REGIONAL, "ANY", tcp=True)
    assert sorted(addresses(msg, SQS_REGIONAL, "A")) == sorted(SQS_IPS.values()), describe(msg)


def test_known_vpce_name_other_type_is_nodata_with_region_soa(dns4):
    msg = q(dns4, SQS_REGIONAL, "TXT")
    assert_nodata(msg, R + ".vpce.amazonaws.com.")
    msg = q(dns4, SQS_ZONAL["a"], "AAAA")
    assert_nodata(msg, R + ".vpce.amazonaws.com.")


# ---------------------------------------------------------------- forwarded names


@pytest.mark.parametrize(
    "name,ip",
    [
        ("vpce-0ffffffffffffffff-zzzzzzzz.sqs.%s" % VPCE, "198.51.100.6"),  # unknown vpce name
        ("s3.amazonaws.com.", "198.51.100.1"),
        ("queue.amazonaws.com.", "198.51.100.7"),
        ("dynamodb.%s.amazonaws.com." % R, "198.51.100.2"),  # gateway endpoint only
        ("logs.%s.amazonaws.com." % R, "198.51.100.4"),  # endpoint still pending
        ("vpce-0182930a4b5c6d7e8-a1s2d3f4.logs.%s" % VPCE, "198.51.100.5"),
    ],
)
def test_names_outside_local_zones_are_forwarded(dns4, name, ip):
    msg = q(dns4, name)
    assert msg.rcode() == dns.rcode.NOERROR, describe(msg)
    assert addresses(msg, name) == [ip], describe(msg)


def test_region_vpce_zone_apex_is_not_owned_locally(dns4):
    # the public <region>.vpce.amazonaws.com zone only lends its SOA: a name under it that
    # the snapshot does not hold goes upstream, which knows nothing here → NXDOMAIN with the
    # upstream's amazonaws.com SOA, not an SOA of ours
    msg = q(dns4, "vpce-0eeeeeeeeeeeeeeee-yyyyyyyy.kms." + VPCE)
    assert msg.rcode() == dns.rcode.NXDOMAIN, describe(msg)
    assert soa_of(msg).name == dns.name.from_text("amazonaws.com."), describe(msg)


# ---------------------------------------------------------------- letter case


def test_names_are_case_insensitive_and_question_case_is_echoed(vpcdns):
    asked = "SqS.Eu-WeSt-1.AmAzOnAwS.CoM."
    query = make_query(asked, "A", qid=0x4242)
    wire = raw_udp("127.0.0.1", vpcdns.port, query.to_wire())
    assert wire is not None, "no answer"
    qname = dns.name.from_text(asked).to_wire()
    assert wire[12 : 12 + len(qname)] == qname, "question case not echoed: %r" % wire[12:60]
    msg = dns.message.from_wire(wire)
    assert sorted(addresses(msg, asked)) == sorted(SQS_IPS.values()), describe(msg)


def test_upper_case_wildcard_and_vpce_names(dns4):
    name = "MY-BUCKET.S3.EU-WEST-1.AMAZONAWS.COM."
    assert sorted(addresses(q(dns4, name), name)) == sorted(S3_IPS)
    assert sorted(addresses(q(dns4, SQS_REGIONAL.upper()), SQS_REGIONAL)) == sorted(SQS_IPS.values())

