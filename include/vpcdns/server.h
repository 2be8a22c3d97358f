/* server.h — the running daemon: worker loops, UDP and TCP listeners on every configured
 * address, the forwarder per worker, signals, reloads and graceful stop. */
#ifndef VPCDNS_SERVER_H
#define VPCDNS_SERVER_H

#include "vpcdns/common.h"
#include "vpcdns/config.h"
#include "vpcdns/snapshot.h"

typedef struct vd_server vd_server;

/* Binds every listen address (UDP and TCP) and prepares the workers. Takes a reference to
 * snap (may be NULL). Errors name the address and the reason. */
int vd_server_new(const vd_config *cfg, vd_snapshot *snap, vd_server **out, vd_error *err);

/* Builds a new snapshot for a reload. Runs on the server's reload thread, at nice +10 and
 * SCHED_IDLE (never on a worker or the control loop), one call at a time, so it may block on
 * file I/O and compile at leisure; it must touch the running server only through the calls
 * documented as thread-safe (vd_server_note_endpoints). Returns 0 with *out holding one reference
 * (the control loop publishes it), VD_RELOAD_UNCHANGED with *out untouched when the inputs are the
 * ones already loaded (nothing is published), or a negative code with err set: the server then
 * keeps serving the snapshot it has. */
typedef int (*vd_reload_fn)(void *arg, vd_snapshot **out, vd_error *err);
#define VD_RELOAD_UNCHANGED 1

/* Makes reloads (SIGHUP, the file watch) call fn(arg, ...) and publish what it builds. Call
 * before vd_server_run. */
void vd_server_on_reload(vd_server *srv, vd_reload_fn fn, void *arg);

/* Control thread only (a signal or watch callback of vd_server_run's loop): reloads the local
 * data as SIGHUP does. trigger names why in the operator log ("sighup", "watch"; a string
 * that lives as long as the server). Starts the reload thread, or, when a reload runs, keeps
 * one more request for when it ends (several requests meanwhile make one reload). Ignored
 * once the stop began. */
void vd_server_request_reload(vd_server *srv, const char *trigger);

/* Publishes snap (a reference is taken; NULL serves no local data) to every worker: each
 * switches between two queries, and the old snapshot is freed when the last worker lets go.
 * Thread-safe: any thread may call it at any time between vd_server_new and vd_server_free,
 * also while the workers run or stop (the reload path does). Workers that are not running
 * yet start with snap; once the stop began, or vd_server_run returned, it only replaces the
 * snapshot the server holds. Not concurrently with vd_server_free. */
void vd_server_publish(vd_server *srv, vd_snapshot *snap);

/* Any thread: the AWS endpoints the local data now serves, reported by /metrics (the snapshot
 * itself does not know them). */
void vd_server_note_endpoints(vd_server *srv, size_t endpoints);

/* Runs until SIGINT or SIGTERM, then stops accepting, lets pending work finish or cancel,
 * closes every handle. Returns 0 on a clean stop. With the HTTP endpoint (metrics_listen) and
 * lameduck_ms, the first signal only makes /ready fail and the stop follows lameduck_ms later;
 * a second one stops at once. */
int vd_server_run(vd_server *srv);

void vd_server_free(vd_server *srv);

#endif
