/* server.h — the running daemon: worker loops, UDP and TCP listeners on every configured
 * address, the forwarder per worker, signals, reloads and graceful stop. */
#ifndef VPCDNS_SERVER_H
#define VPCDNS_SERVER_H

#include "vpcdns/common.h"
#include "vpcdns/config.h"
#include "vpcdns/snapshot.h"

typedef struct vd_server vd_server;

/* Binds every listen address (UDP and TCP) and prepares the workers. Takes a reference to
 * snap (may be NULL). Errors name the address and the reason; an address that another socket
 * holds is refused (with the pid of the vpcdns that serves it) unless cfg->takeover. Sockets
 * passed by systemd (LISTEN_FDS) or taken over from a running vpcdns (cfg->takeover) are used
 * for the addresses they match instead of binding. When cfg->listen_default, a default address
 * that cannot be bound (no IPv6 in a container, say) is skipped with a warning
 * (listen_skipped); the start fails only when none of them binds. */
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

/* Then, on the control loop: commit(arg, true, err) just before a snapshot fn built is
 * published (settings that come with it are applied here, with the workers' view of them; a
 * non-zero return drops the snapshot and counts a failed reload), or commit(arg, false, NULL)
 * when what fn built will not be published (it failed, changed nothing, or the stop began). */
typedef int (*vd_reload_commit_fn)(void *arg, bool apply, vd_error *err);

/* Makes reloads (SIGHUP, the file watch, `vpcdns --reload`) call fn(arg, ...) on the reload
 * thread, then commit (may be NULL) on the control loop, and publish what fn built. Call
 * before vd_server_run. */
void vd_server_on_reload(vd_server *srv, vd_reload_fn fn, vd_reload_commit_fn commit, void *arg);

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

/* The listen addresses the server bound (cfg's, less the skipped defaults): *out borrows them
 * until vd_server_free. Returns their count. */
size_t vd_server_listen_addrs(const vd_server *srv, const vd_addr **out);

/* The reload path (the control thread, never a worker): applies the settings of cfg that
 * change live (every key not marked restart in the key table) to the running server: the
 * access list and deny_action, the TCP and per-client limits, lameduck_ms, and, when they
 * differ from what the workers have, the upstreams, forwarding rules and the upstream and
 * serve-stale settings (each worker then makes a new forwarder and resolver on its own loop;
 * queries upstream at that moment get no answer, and the client's retry goes the new way).
 * Keys marked restart are not read. Each worker takes the settings with the next snapshot it
 * is woken for, between two queries. Returns 0, or -ENOMEM with err set and nothing changed. */
int vd_server_apply_config(vd_server *srv, const vd_config *cfg, vd_error *err);

/* Any thread: reason (not NULL) says the server answers from the last-good copy of its data
 * because the configured data did not load; /ready stays 200 and says so, /metrics shows
 * vpcdns_data_fallback 1. NULL: the configured data loaded (0). */
void vd_server_note_fallback(vd_server *srv, const char *reason);

/* Any thread: the AWS endpoints the local data now serves, reported by /metrics (the snapshot
 * itself does not know them). */
void vd_server_note_endpoints(vd_server *srv, size_t endpoints);
/* After a reload: the query log names the account, VPC and region of these snapshot
 * directories (of VPC vpc when set) from now on (read in the background; a no-op without a
 * query log). */
void vd_server_note_snapshot_dirs(vd_server *srv, char *const *dirs, size_t n_dirs,
                                  const char *vpc);

/* Before vd_server_run: the clients' AZ (an AZ name or ID, "" = each client's by the
 * snapshot's subnets), as main resolved the az setting (az.h); NULL: unknown (az: imds did
 * not answer), so no AZ affinity whatever az_affinity says, until a restart. */
void vd_server_set_az(vd_server *srv, const char *az);

/* Runs until SIGINT or SIGTERM (or until a --takeover successor serves), then answers what is
 * queued in the UDP sockets, stops accepting, lets pending work finish or cancel, closes every
 * handle. Returns 0 on a clean stop. With the HTTP endpoint (metrics_listen) and lameduck_ms,
 * the first signal only makes /ready fail and the stop follows lameduck_ms later; a second one
 * stops at once. Tells systemd READY=1 once the workers run (and STOPPING=1, RELOADING=1). */
int vd_server_run(vd_server *srv);

void vd_server_free(vd_server *srv);

#endif
