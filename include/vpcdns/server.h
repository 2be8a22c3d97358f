/* server.h — the running daemon: worker loops, UDP and TCP listeners on every configured
 * address, the forwarder per worker, signals and graceful stop. */
#ifndef VPCDNS_SERVER_H
#define VPCDNS_SERVER_H

#include "vpcdns/common.h"
#include "vpcdns/config.h"
#include "vpcdns/snapshot.h"

typedef struct vd_server vd_server;

/* Binds every listen address (UDP and TCP) and prepares the workers. Takes a reference to
 * snap (may be NULL). Errors name the address and the reason. */
int vd_server_new(const vd_config *cfg, vd_snapshot *snap, vd_server **out, vd_error *err);

/* Runs until SIGINT or SIGTERM, then stops accepting, lets pending work finish or cancel,
 * closes every handle. Returns 0 on a clean stop. */
int vd_server_run(vd_server *srv);

void vd_server_free(vd_server *srv);

#endif
