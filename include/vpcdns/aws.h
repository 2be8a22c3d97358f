/* aws.h — reads an AWS snapshot (the JSON of `aws ec2 describe-vpc-endpoints` and
 * `aws ec2 describe-network-interfaces`, unchanged) and feeds the endpoint names of
 * docs/endpoint-dns.md to a snapshot builder. Knows nothing about sockets or queries. */
#ifndef VPCDNS_AWS_H
#define VPCDNS_AWS_H

#include <stddef.h>

#include "vpcdns/common.h"
#include "vpcdns/snapshot.h"

typedef struct vd_aws_summary {
        size_t endpoints;        /* all endpoints in the file */
        size_t endpoints_served; /* Interface endpoints in state available */
        size_t names;            /* DNS names added (regional, zonal, private, wildcard) */
        size_t addresses;        /* A and AAAA records added */
} vd_aws_summary;

/* Loads DIR/describe-vpc-endpoints.json and DIR/describe-network-interfaces.json into b.
 * Errors name the file, the JSON path (VpcEndpoints[3].DnsEntries[0].DnsName) or line and
 * column, and what was expected. sum may be NULL; counts are added to it. */
int vd_aws_load(vd_builder *b, const char *dir, vd_aws_summary *sum, vd_error *err);

#endif
