/* aws.h — reads an AWS snapshot (the JSON of `aws ec2 describe-vpc-endpoints` and
 * `aws ec2 describe-network-interfaces`, unchanged) and feeds the endpoint names of
 * docs/endpoint-dns.md to a snapshot builder. Knows nothing about sockets or queries. */
#ifndef VPCDNS_AWS_H
#define VPCDNS_AWS_H

#include <stdbool.h>
#include <stddef.h>

#include "vpcdns/common.h"
#include "vpcdns/snapshot.h"

#define VD_AWS_VPCS_MAX 64
#define VD_AWS_VPC_ID_MAX 32 /* "vpc-" and 17 hex digits fit with room to spare */

typedef struct vd_aws_summary {
        size_t endpoints;        /* all endpoints in the file */
        size_t endpoints_served; /* Interface endpoints in state available */
        size_t names;            /* DNS names added (regional, zonal, private, wildcard) */
        size_t addresses;        /* A and AAAA records added */
        /* The distinct VpcIds of the endpoints read (with or without a VPC filter), in file
         * order; served: one of its endpoints is an available Interface endpoint. VpcIds of
         * VD_AWS_VPC_ID_MAX octets or more and VPCs past VD_AWS_VPCS_MAX are counted in
         * vpcs_more only. */
        struct vd_aws_vpc {
                char id[VD_AWS_VPC_ID_MAX];
                bool served;
        } vpcs[VD_AWS_VPCS_MAX];
        size_t n_vpcs;
        size_t vpcs_more;
} vd_aws_summary;

/* Loads DIR/describe-vpc-endpoints.json and DIR/describe-network-interfaces.json into b.
 * Errors name the file, the JSON path (VpcEndpoints[3].DnsEntries[0].DnsName) or line and
 * column, and what was expected. sum may be NULL; counts are added to it. */
int vd_aws_load(vd_builder *b, const char *dir, vd_aws_summary *sum, vd_error *err);

/* What one load serves, for a view (docs/views.md). */
typedef struct vd_aws_options {
        /* Only the endpoints of this VpcId are served (the others are named at debug level and
         * their names forwarded); NULL: every VPC's. */
        const char *vpc;
        /* The clients count as coming through a Route 53 Resolver inbound endpoint
         * (on-premises): an endpoint with PrivateDnsOnlyForInboundResolverEndpoint serves its
         * private DNS names too. false: clients inside the VPC, which AWS answers for those
         * names from public DNS (so they are forwarded). */
        bool inbound;
        /* With vpc NULL: a file whose served endpoints belong to more than one VPC is refused
         * (vd_aws_several_vpcs_error), before any of its names is added. */
        bool one_vpc;
} vd_aws_options;

/* vd_aws_load with options; opt NULL is vd_aws_load (every VPC, inside clients, no check). */
int vd_aws_load_with(vd_builder *b, const char *dir, const vd_aws_options *opt, vd_aws_summary *sum,
                     vd_error *err);

/* Adds the VPCs of from to into (once each; served if served in either). */
void vd_aws_summary_merge_vpcs(vd_aws_summary *into, const vd_aws_summary *from);
/* The number of VPCs in s with a served endpoint (vpcs_more counted as served). */
size_t vd_aws_served_vpcs(const vd_aws_summary *s);
/* True when s lists vpc (or cannot tell: vpcs_more > 0). */
bool vd_aws_has_vpc(const vd_aws_summary *s, const char *vpc);
/* Writes the VpcIds of s to out, ", "-separated (served ones only when served_only), "and N
 * more" when the list is cut. */
void vd_aws_format_vpcs(const vd_aws_summary *s, bool served_only, char *out, size_t cap);
/* The refusal of data whose served endpoints span VPCs with no VPC chosen: "WHERE: the
 * snapshot serves endpoints of several VPCs (...)" and how to choose. Returns -EINVAL. */
int vd_aws_several_vpcs_error(const vd_aws_summary *s, const char *where, vd_error *err);

#endif
