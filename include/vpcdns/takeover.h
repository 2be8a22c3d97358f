/* takeover.h — the control socket through which a running vpcdns hands its listening sockets
 * to a new instance started with --takeover, so that no queued query is lost in a restart or
 * an upgrade, and through which `vpcdns --reload` asks for a reload and waits for its result.
 *
 * The control socket is a unix SOCK_SEQPACKET socket in the abstract namespace (no file, gone
 * with the process), one per listen address: "vpcdns-control:ADDR:PORT" (ADDR as the log
 * writes it, e.g. "vpcdns-control:127.0.0.1:53"). Being named after the address, it is found
 * by whoever wants that address, in the same network namespace (a pod, or a host-network
 * DaemonSet's pods); nothing needs a runtime directory. Each side checks the other with
 * SO_PEERCRED: only the same user, or root, is answered (the kernel's SO_REUSEPORT has the
 * same rule).
 *
 * The exchange (one message per line of text, descriptors as SCM_RIGHTS):
 *   new → old  "TAKEOVER"
 *   old → new  "FDS" carrying up to VD_TAKEOVER_CHUNK descriptors, as often as needed;
 *              then "END <count>", after the old one closed its control listeners
 *   new → old  "SERVING" once its workers read the sockets; the old one stops reading and
 *              exits after its in-flight answers. A close instead: the old one goes on.
 *   any → old  "RELOAD"; old → it "OK <detail>" or "ERROR <why>" once the reload is done.
 * Must not know workers or DNS: the server lends the descriptors through a callback. */
#ifndef VPCDNS_TAKEOVER_H
#define VPCDNS_TAKEOVER_H

#include <stddef.h>
#include <sys/types.h>
#include <uv.h>

#include "vpcdns/addr.h"
#include "vpcdns/common.h"
#include "vpcdns/config.h"

#define VD_TAKEOVER_CHUNK 200 /* descriptors per message (the kernel allows 253) */
#define VD_TAKEOVER_MAX_FDS 2048
#define VD_TAKEOVER_TIMEOUT_MS 5000 /* the new instance waits at most this for each message */

/* ---- the new instance (blocking: runs before the workers start) --------------------------- */

/* Asks the vpcdns serving addr for its listening sockets: up to cap descriptors go to fds
 * (owned by the caller). Returns how many, 0 when nobody answers on addr's control socket
 * (the caller binds as usual), or -errno with err set when an instance answered but the
 * hand-over failed (the caller must not start: the old instance keeps serving). On success
 * *conn is the connection on which to send vd_takeover_serving. */
int vd_takeover_request(const vd_addr *addr, int *fds, size_t cap, int *conn, vd_error *err);

/* Tells the old instance that this one serves, and closes conn (-1: nothing to do). */
void vd_takeover_serving(int conn);

/* The pid of the vpcdns whose control socket answers for addr, or 0 when none does. */
pid_t vd_takeover_peer(const vd_addr *addr);

/* Asks the vpcdns on addr to reload and waits for its answer (at most timeout_ms). Returns 0
 * with the detail in msg, or -errno with the reason in msg (-ENOENT: nobody answers). */
int vd_takeover_reload(const vd_addr *addr, unsigned timeout_ms, char *msg, size_t cap);

/* ---- the running instance (its control loop) ----------------------------------------------- */

typedef struct vd_control vd_control;

typedef struct vd_control_ops {
        /* The listening sockets to hand over (borrowed: they stay open here); returns how many
         * were written to fds (at most cap). */
        size_t (*sockets)(void *arg, int *fds, size_t cap);
        /* The new instance (pid) serves: stop reading and exit after in-flight answers. */
        void (*serving)(void *arg, pid_t pid);
        /* Starts a reload (or queues one behind the reload running): 0 with *number set to the
         * reload whose end answers the request (vd_control_reload_done), or -errno with the
         * reason in msg. */
        int (*reload)(void *arg, uint64_t *number, char *msg, size_t cap);
} vd_control_ops;

/* Binds a control socket for each address and serves them on loop. An address whose name is
 * taken (a vpcdns that still holds it) is only logged: the server runs without it. Returns 0
 * or -errno (out of memory). */
int vd_control_start(uv_loop_t *loop, const vd_addr *addrs, size_t n, const vd_control_ops *ops,
                     void *arg, vd_control **out);

/* Reload number is over: every --reload request waiting for it (or an earlier one) gets "OK
 * detail" or "ERROR detail". NULL c is fine. */
void vd_control_reload_done(vd_control *c, uint64_t number, bool ok, const char *detail);

/* Closes every control handle; the memory goes in the last close callback. NULL is fine. */
void vd_control_close(vd_control *c);

#endif
