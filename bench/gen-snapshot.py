#!/usr/bin/python3
"""gen-snapshot.py — a large, realistic AWS snapshot for the scale benchmark.

Writes OUTDIR/describe-vpc-endpoints.json and OUTDIR/describe-network-interfaces.json in the
shape `aws ec2 describe-vpc-endpoints` / `aws ec2 describe-network-interfaces` print (4-space
JSON, PolicyDocument strings, Groups, Tags, a NextToken), for one VPC:

* interface endpoints for AWS services (sqs, sts, ec2, ssm, kms, logs, ecr.api, ecr.dkr, s3
  with its wildcard names, secretsmanager, ...). AWS allows one endpoint per service with
  private DNS in a VPC: the first endpoint of each service has it on, later ones have it off
  (their vpce names are still answered);
* PrivateLink endpoints to partner and customer endpoint services
  (com.amazonaws.vpce.REGION.vpce-svc-...), about one in ten with a private DNS name of its
  own (answered as a CNAME to the endpoint's regional vpce name);
* a few endpoints vpcdns does not serve: the S3 and DynamoDB gateway endpoints and about one
  interface endpoint in two hundred in state pendingAcceptance;
* per served endpoint, --enis ENIs in as many AZs, each with a private IPv4 address unique in
  the VPC's 10.0.0.0/8 (and an IPv6 address for dualstack endpoints); a few ENIs that no
  endpoint uses (instances, a NAT gateway).

--endpoints counts every entry of VpcEndpoints. The output depends only on the arguments
(the same --seed gives the same files). Names per endpoint: one regional and one zonal vpce
name per ENI, so 10,000 endpoints with 3 ENIs give about 40,000 names.

Usage: gen-snapshot.py OUTDIR [--endpoints 10000] [--enis 3] [--region us-east-1] [--seed 1]
"""

import argparse
import ipaddress
import json
import os
import random
import sys

# AZ names per region; other regions get a, b, c.
REGION_AZS = {
    "us-east-1": "abcdef",
    "us-west-2": "abcd",
    "ap-northeast-1": "acd",
}

# AWS services with interface endpoints: (service suffix of ServiceName, private DNS names
# other than the vpce names, vpce names are wildcards). "{r}" is the region. The order puts
# the services the issue names first.
AWS_SERVICES = [
    ("sqs", ["sqs.{r}.amazonaws.com"], False),
    ("sts", ["sts.{r}.amazonaws.com"], False),
    ("ec2", ["ec2.{r}.amazonaws.com"], False),
    ("ssm", ["ssm.{r}.amazonaws.com"], False),
    ("kms", ["kms.{r}.amazonaws.com"], False),
    ("logs", ["logs.{r}.amazonaws.com"], False),
    ("ecr.api", ["api.ecr.{r}.amazonaws.com", "ecr.{r}.api.aws"], False),
    ("ecr.dkr", ["dkr.ecr.{r}.amazonaws.com", "*.dkr.ecr.{r}.amazonaws.com"], False),
    ("s3", ["s3.{r}.amazonaws.com", "*.s3.{r}.amazonaws.com"], True),
    ("secretsmanager", ["secretsmanager.{r}.amazonaws.com"], False),
    ("ssmmessages", ["ssmmessages.{r}.amazonaws.com"], False),
    ("ec2messages", ["ec2messages.{r}.amazonaws.com"], False),
    ("monitoring", ["monitoring.{r}.amazonaws.com"], False),
    ("execute-api", ["execute-api.{r}.amazonaws.com", "*.execute-api.{r}.amazonaws.com"], False),
    ("lambda", ["lambda.{r}.amazonaws.com"], False),
    ("sns", ["sns.{r}.amazonaws.com"], False),
    ("events", ["events.{r}.amazonaws.com"], False),
    ("states", ["states.{r}.amazonaws.com"], False),
    ("elasticloadbalancing", ["elasticloadbalancing.{r}.amazonaws.com"], False),
    ("autoscaling", ["autoscaling.{r}.amazonaws.com"], False),
    ("ecs", ["ecs.{r}.amazonaws.com"], False),
    ("ecs-agent", ["ecs-a.{r}.amazonaws.com"], False),
    ("ecs-telemetry", ["ecs-t.{r}.amazonaws.com"], False),
    ("kinesis-streams", ["kinesis.{r}.amazonaws.com"], False),
    ("kinesis-firehose", ["firehose.{r}.amazonaws.com"], False),
    ("cloudformation", ["cloudformation.{r}.amazonaws.com"], False),
    ("codebuild", ["codebuild.{r}.amazonaws.com"], False),
    ("elasticfilesystem", ["elasticfilesystem.{r}.amazonaws.com"], False),
    ("rds", ["rds.{r}.amazonaws.com"], False),
    ("glue", ["glue.{r}.amazonaws.com"], False),
    ("athena", ["athena.{r}.amazonaws.com"], False),
    ("xray", ["xray.{r}.amazonaws.com"], False),
    ("sagemaker.api", ["api.sagemaker.{r}.amazonaws.com"], False),
    ("sagemaker.runtime", ["runtime.sagemaker.{r}.amazonaws.com"], False),
    ("elasticache", ["elasticache.{r}.amazonaws.com"], False),
    ("servicecatalog", ["servicecatalog.{r}.amazonaws.com"], False),
]

WORDS = [
    "acme", "globex", "initech", "umbrella", "hooli", "stark", "wayne", "tyrell", "cyberdyne",
    "soylent", "wonka", "vandelay", "massive", "aperture", "oscorp", "gringotts", "monarch",
    "nakatomi", "prestige", "zorg", "virtucon", "dunder", "pied", "bluth", "krusty",
]
PARTS = ["api", "data", "auth", "ingest", "events", "search", "billing", "metrics", "queue",
         "files", "feeds", "graph", "stream", "orders", "ledger", "identity"]

POLICY = json.dumps({
    "Version": "2008-10-17",
    "Statement": [{"Effect": "Allow", "Principal": "*", "Action": "*", "Resource": "*"}],
})
ACCOUNT = "210987654321"
REQUESTER = "727180483921"
ALNUM = "abcdefghijklmnopqrstuvwxyz0123456789"


class Ids:
    """Random AWS-style ids, unique per prefix, deterministic for the generator's seed."""

    def __init__(self, rng):
        self.rng = rng
        self.seen = set()

    def hex_id(self, prefix, digits=17):
        while True:
            value = "%s-0%0*x" % (prefix, digits - 1, self.rng.getrandbits(4 * (digits - 1)))
            if value not in self.seen:
                self.seen.add(value)
                return value

    def suffix(self):
        return "".join(self.rng.choice(ALNUM) for _ in range(8))


class Addresses:
    """Unique ENI addresses: AZ k owns 10.(16k..16k+15).0.0/12 and 2600:1f18:4a3:6e0k::/64."""

    def __init__(self, n_azs):
        self.next = [0] * n_azs

    def take(self, az_index):
        while True:
            j = self.next[az_index]
            self.next[az_index] += 1
            if (j & 0xFF) in (0, 1, 2, 3, 255):  # AWS reserves .0-.3 and the last address
                continue
            if j >= 1 << 20:
                sys.exit("gen-snapshot: more than 1M ENIs in one AZ")
            v4 = str(ipaddress.IPv4Address((10 << 24) | ((16 * az_index) << 16) | j))
            v6 = str(ipaddress.IPv6Address(
                (0x26001F1804A36E00 + az_index + 1) << 64 | (0x1000 + j)))
            return v4, v6


def dns_entry(name, zone_id):
    return {"DnsName": name, "HostedZoneId": zone_id}


def make_endpoint(vpc, ids, eid, service_name, svc_labels, region, azs, enis, private_names,
                  private_dns, wildcard_vpce, ip_type, state, tag):
    """One VpcEndpoints[] entry. svc_labels: the service's labels in vpce names."""
    suffix = ids.suffix()
    vpce_zone = "Z7HUB22UULQXV"
    entries = []
    star = "*." if wildcard_vpce else ""
    base = "%s-%s" % (eid, suffix)
    entries.append(dns_entry("%s%s.%s.%s.vpce.amazonaws.com" % (star, base, svc_labels, region),
                             vpce_zone))
    for az in azs:
        entries.append(dns_entry("%s%s-%s.%s.%s.vpce.amazonaws.com" % (
            star, base, az, svc_labels, region), vpce_zone))
    for name in private_names:
        entries.append(dns_entry(name, "Z%013X" % (abs(hash_name(name)) % (1 << 52))))
    ep = {
        "VpcEndpointId": eid,
        "VpcEndpointType": "Interface",
        "VpcId": vpc["id"],
        "ServiceName": service_name,
        "State": state,
        "PolicyDocument": POLICY,
        "RouteTableIds": [],
        "SubnetIds": [vpc["subnets"][az] for az in azs],
        "Groups": [{"GroupId": vpc["security_group"], "GroupName": "endpoints"}],
        "PrivateDnsEnabled": private_dns,
        "RequesterManaged": False,
        "NetworkInterfaceIds": [e["NetworkInterfaceId"] for e in enis],
        "DnsEntries": entries,
        "CreationTimestamp": "2026-03-02T11:00:00.000Z",
        "Tags": [{"Key": "Name", "Value": tag}],
        "OwnerId": ACCOUNT,
        "IpAddressType": "dualstack" if ip_type in ("dualstack", "service-defined") else "ipv4",
        "DnsOptions": {"DnsRecordIpType": ip_type},
    }
    if service_name.endswith(".s3"):
        ep["DnsOptions"]["PrivateDnsOnlyForInboundResolverEndpoint"] = False
    return ep


def hash_name(name):
    """A stable hash (Python's hash() of str is salted per process)."""
    h = 2166136261
    for c in name.encode():
        h = ((h ^ c) * 16777619) & 0xFFFFFFFF
    return h


def make_eni(vpc, eni_id, az, v4, v6, description, interface_type="vpc_endpoint",
             requester=True):
    eni = {
        "AvailabilityZone": az,
        "Description": description,
        "InterfaceType": interface_type,
        "Ipv6Addresses": [{"Ipv6Address": v6, "IsPrimaryIpv6": False}] if v6 else [],
        "NetworkInterfaceId": eni_id,
        "PrivateIpAddress": v4,
        "PrivateIpAddresses": [{"Primary": True, "PrivateIpAddress": v4}],
        "RequesterManaged": requester,
        "Status": "in-use",
        "SubnetId": vpc["subnets"][az],
        "VpcId": vpc["id"],
    }
    if requester:
        eni["RequesterId"] = REQUESTER
    return eni


def generate(args):
    rng = random.Random(args.seed)
    ids = Ids(rng)
    region = args.region
    az_letters = REGION_AZS.get(region, "abc")
    az_names = [region + letter for letter in az_letters]
    if args.enis < 1 or args.enis > len(az_names):
        sys.exit("gen-snapshot: --enis must be 1..%d for %s (one ENI per AZ)"
                 % (len(az_names), region))
    vpc = {
        "id": ids.hex_id("vpc"),
        "security_group": ids.hex_id("sg"),
        "subnets": {az: ids.hex_id("subnet") for az in az_names},
    }
    addrs = Addresses(len(az_names))

    endpoints, interfaces = [], []
    n_gateway = 2 if args.endpoints >= 10 else 0
    n_interface = args.endpoints - n_gateway
    n_aws = max(len(AWS_SERVICES), n_interface // 12) if n_interface >= len(AWS_SERVICES) \
        else n_interface
    aws_seen = set()
    partner_names = set()
    for i in range(n_interface):
        eid = ids.hex_id("vpce")
        azs = [az_names[(i + k) % len(az_names)] for k in range(args.enis)]
        pending = i >= len(AWS_SERVICES) and rng.random() < 0.005
        ip_type = "ipv4"
        if i < n_aws:
            svc, names, wildcard = AWS_SERVICES[i % len(AWS_SERVICES)]
            service_name = "com.amazonaws.%s.%s" % (region, svc)
            svc_labels = ".".join(reversed(svc.split(".")))
            # AWS allows one endpoint per service with private DNS in a VPC.
            private_dns = svc not in aws_seen and not pending
            if private_dns:
                aws_seen.add(svc)
            private_names = [n.format(r=region) for n in names]
            if svc in ("ec2", "sns") or (svc != "s3" and rng.random() < 0.05):
                ip_type = "dualstack"
            elif svc == "lambda":
                ip_type = "service-defined"
            tag = svc
        else:
            svc_id = ids.hex_id("vpce-svc")
            service_name = "com.amazonaws.vpce.%s.%s" % (region, svc_id)
            svc_labels = svc_id
            wildcard = False
            private_dns = rng.random() < 0.1
            private_names = []
            if private_dns:
                while True:
                    name = "%s.%s%d.example" % (rng.choice(PARTS), rng.choice(WORDS),
                                                rng.randrange(10000))
                    if name not in partner_names:
                        partner_names.add(name)
                        break
                private_names = [name]
            tag = "partner-%d" % i
        enis = []
        if not pending:
            for az in azs:
                v4, v6 = addrs.take(az_names.index(az))
                eni = make_eni(vpc, ids.hex_id("eni"), az, v4,
                               v6 if ip_type != "ipv4" else None,
                               "VPC Endpoint Interface " + eid,
                               "interface" if rng.random() < 0.02 else "vpc_endpoint")
                enis.append(eni)
                interfaces.append(eni)
        endpoints.append(make_endpoint(
            vpc, ids, eid, service_name, svc_labels, region, azs, enis, private_names, private_dns,
            wildcard, ip_type, "pendingAcceptance" if pending else "available", tag))
    for svc in ("s3", "dynamodb")[:n_gateway]:
        endpoints.append({
            "VpcEndpointId": ids.hex_id("vpce"),
            "VpcEndpointType": "Gateway",
            "VpcId": vpc["id"],
            "ServiceName": "com.amazonaws.%s.%s" % (region, svc),
            "State": "available",
            "PolicyDocument": POLICY,
            "RouteTableIds": [ids.hex_id("rtb")],
            "SubnetIds": [],
            "Groups": [],
            "PrivateDnsEnabled": False,
            "RequesterManaged": False,
            "NetworkInterfaceIds": [],
            "DnsEntries": [],
            "CreationTimestamp": "2026-03-02T11:00:00.000Z",
            "OwnerId": ACCOUNT,
            "IpAddressType": "ipv4",
            "DnsOptions": {"DnsRecordIpType": "ipv4"},
        })
    # ENIs no endpoint uses: instances and a NAT gateway (never served).
    for k in range(min(10, args.endpoints)):
        az = az_names[k % len(az_names)]
        v4, _ = addrs.take(k % len(az_names))
        interfaces.append(make_eni(vpc, ids.hex_id("eni"), az, v4, None,
                                   "Interface for NAT Gateway" if k == 0 else "",
                                   "nat_gateway" if k == 0 else "interface", requester=False))
    # describe-network-interfaces does not list ENIs in endpoint order.
    rng.shuffle(interfaces)
    return {"VpcEndpoints": endpoints, "NextToken": None}, {"NetworkInterfaces": interfaces}


def write_json(path, doc):
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=4)
    os.replace(tmp, path)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("outdir")
    parser.add_argument("--endpoints", type=int, default=10000,
                        help="entries of VpcEndpoints, gateway and pending ones included")
    parser.add_argument("--enis", type=int, default=3, help="ENIs (and AZs) per endpoint")
    parser.add_argument("--region", default="us-east-1")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    if args.endpoints < 1:
        parser.error("--endpoints must be at least 1")
    os.makedirs(args.outdir, exist_ok=True)
    eps, enis = generate(args)
    write_json(os.path.join(args.outdir, "describe-vpc-endpoints.json"), eps)
    write_json(os.path.join(args.outdir, "describe-network-interfaces.json"), enis)
    served = sum(1 for e in eps["VpcEndpoints"]
                 if e["VpcEndpointType"] == "Interface" and e["State"] == "available")
    print("gen-snapshot: %s: %d endpoints (%d interface, available), %d ENIs"
          % (args.outdir, len(eps["VpcEndpoints"]), served, len(enis["NetworkInterfaces"])),
          file=sys.stderr)


if __name__ == "__main__":
    main()
