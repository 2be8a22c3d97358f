/* sd.h — the two systemd protocols vpcdns speaks, in a few lines of its own (no libsystemd):
 * socket activation (LISTEN_PID, LISTEN_FDS, LISTEN_FDNAMES: sockets passed from fd 3 on) and
 * readiness notification (NOTIFY_SOCKET: one datagram per state change). Both are no-ops when
 * the variables are absent, so the daemon runs the same under any supervisor or none.
 * Used by server.c only; nothing here knows DNS. */
#ifndef VPCDNS_SD_H
#define VPCDNS_SD_H

#include <stddef.h>

#define VD_SD_LISTEN_FDS_START 3
#define VD_SD_MAX_FDS 64

/* The sockets systemd passed to this process: their descriptors (VD_SD_LISTEN_FDS_START on)
 * go to fds (cap entries); returns how many, 0 when none were passed to this PID, or -EINVAL
 * when LISTEN_FDS is not a number or names more than cap. The descriptors become
 * close-on-exec and the three variables are removed from the environment, so a child never
 * takes them for its own. The caller owns the descriptors. Call once, before any other file
 * is opened (the descriptors are only numbers until then). */
int vd_sd_listen_fds(int *fds, size_t cap);

/* Sends state (lines such as "READY=1\nSTATUS=serving") to $NOTIFY_SOCKET (a path, or an
 * abstract name written with a leading '@'). Returns 0 when sent or when there is no
 * NOTIFY_SOCKET, else -errno. Any thread; never blocks (a datagram to a local socket). */
int vd_sd_notify(const char *state);

/* vd_sd_notify with printf formatting, for STATUS= lines; the text is cut at 1 KiB. */
int vd_sd_notifyf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
