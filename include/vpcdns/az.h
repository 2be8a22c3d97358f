/* az.h — where this instance's clients are, for AZ-local endpoint answers: the `az` setting
 * taken as given, or asked of the EC2 instance metadata service (IMDSv2) once at the start;
 * and the operator log line that says which AZ affinity is in force. Runs on the control
 * thread only (never on a worker): asking IMDS blocks for up to about two seconds. */
#ifndef VPCDNS_AZ_H
#define VPCDNS_AZ_H

#include <stddef.h>
#include <stdio.h>
#include <sys/socket.h>

#include "vpcdns/common.h"
#include "vpcdns/snapshot.h"

/* Where the clients' AZ comes from. */
typedef enum vd_az_source {
        VD_AZ_SOURCE_SUBNETS = 0, /* no az setting: each client's by the snapshot's subnets */
        VD_AZ_SOURCE_CONFIG,      /* the az setting (or --az) */
        VD_AZ_SOURCE_IMDS,        /* az: imds, answered */
        VD_AZ_SOURCE_NONE,        /* az: imds, unreachable: no affinity */
} vd_az_source;

const char *vd_az_source_name(vd_az_source source);

/* The IMDS address: 169.254.169.254:80, or for tests only the HOST:PORT of the environment
 * variable VPCDNS_TEST_IMDS (a loopback fake: tests never reach the real service); a value
 * that is not a loopback address (127.x.y.z:PORT, [::1]:PORT) is ignored with a warning. */
#define VD_IMDS_DEFAULT "169.254.169.254"
#define VD_IMDS_TEST_ENV "VPCDNS_TEST_IMDS"

/* IMDSv2: PUT /latest/api/token (X-aws-ec2-metadata-token-ttl-seconds: 60), then GET
 * /latest/meta-data/placement/availability-zone-id with the token; each step times out after
 * timeout_ms. host_port is "HOST" or "HOST:PORT". On success out (cap octets) holds the AZ ID;
 * otherwise a negative code and err says which step failed and why. */
int vd_az_imds(const char *host_port, unsigned timeout_ms, char *out, size_t cap, vd_error *err);

/* The clients' AZ from the az setting (configured: "" unset, "imds", or a name or ID) into out
 * (cap octets, "" when none), and where it came from. For imds, asks the service (the test
 * variable's address when set) with 1 s timeouts and logs the outcome: az_imds with the AZ, or
 * the warning az_imds_failed (start without affinity). */
vd_az_source vd_az_resolve(const char *configured, char *out, size_t cap);

/* The operator log line az_affinity: the mode, the AZ and its source, and how many ENI
 * addresses, AZs and subnets the snapshot holds; a warning az_unknown when an AZ is set that
 * the snapshot does not know (no affinity until a snapshot does). event: "start" or "reload". */
void vd_az_log(const vd_snapshot *s, vd_az_affinity mode, const char *az, vd_az_source source,
               const char *event);

/* --dump --client: writes to out what a client at addr is answered: a comment line with its
 * AZ (az set: that one, source as resolved; else by the snapshot's subnets; none for
 * VD_AZ_SOURCE_NONE) and the mode,
 * then for each endpoint name (a name whose A or AAAA answer holds an ENI address), in the
 * snapshot's order, "NAME TYPE ADDR..." in the order this client gets them (rotation 0, every
 * ENI up as loaded). Returns 0, or -1 when out could not be written. */
int vd_az_dump_client(const vd_snapshot *s, vd_az_affinity mode, const char *az,
                      vd_az_source source, const struct sockaddr *addr, FILE *out);

#endif
