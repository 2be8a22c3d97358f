#!/usr/bin/python3 -I
"""sd_launch.py — a stand-in for systemd socket activation, for machines where systemd is not
PID 1 (containers, CI): binds the listening sockets itself, as a .socket unit would (UDP with a
4 MiB receive buffer, TCP listening), and starts the daemon with them by the LISTEN_FDS
protocol (fds from 3 on, LISTEN_PID, LISTEN_FDNAMES) and a NOTIFY_SOCKET it reads. After
--restart-after seconds it restarts the daemon on the same sockets, then stops it at --stop-after.

  --mode overlap     start the new instance, wait for its READY=1, then SIGTERM the old one
  --mode stop-start  SIGTERM the old one, wait for its exit, then start the new one (the
                     order of `systemctl restart`: the kernel queues queries meanwhile)

Every notification and step is printed to stderr with the time since start. Exit 0 when both
instances became ready and stopped cleanly, 1 otherwise. Only loopback addresses."""

import argparse
import os
import signal
import socket
import sys
import time

START = time.monotonic()


def say(text):
    sys.stderr.write("sd_launch: %7.3f s %s\n" % (time.monotonic() - START, text))
    sys.stderr.flush()


def parse_addr(text):
    host, _, port = text.rpartition(":")
    host = host.strip("[]")
    if not (host.startswith("127.") or host == "::1"):
        raise SystemExit("sd_launch: loopback addresses only, got %s" % text)
    return host, int(port)


def bind_sockets(addrs):
    socks = []
    for host, port in addrs:
        fam = socket.AF_INET6 if ":" in host else socket.AF_INET
        for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
            s = socket.socket(fam, kind)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if fam == socket.AF_INET6:
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            if kind == socket.SOCK_DGRAM:
                try:  # as ReceiveBuffer=4M does (systemd is root: SO_RCVBUFFORCE)
                    s.setsockopt(socket.SOL_SOCKET, 33, 4 << 20)  # SO_RCVBUFFORCE
                except OSError:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
            s.bind((host, port))
            if kind == socket.SOCK_STREAM:
                s.listen(256)
            socks.append(s)
    return socks


def spawn(argv, socks, notify_path, log):
    pid = os.fork()
    if pid == 0:
        try:
            high = [os.dup(s.fileno()) for s in socks]  # out of the way of 3.. first
            high = [os.dup2(fd, 200 + i) for i, fd in enumerate(high)]
            for i, fd in enumerate(high):  # fds 3.. in order, inherited by the exec
                os.dup2(fd, 3 + i, inheritable=True)
            fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            os.dup2(fd, 2)
            env = dict(os.environ)
            env["LISTEN_PID"] = str(os.getpid())
            env["LISTEN_FDS"] = str(len(socks))
            env["LISTEN_FDNAMES"] = ":".join("vpcdns" for _ in socks)
            env["NOTIFY_SOCKET"] = notify_path
            os.closerange(3 + len(socks), 1024)
            os.execve(argv[0], argv, env)
        finally:
            os._exit(127)
    say("started pid %d" % pid)
    return pid


def wait_ready(notify, pid, limit):
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        notify.settimeout(max(0.01, min(0.2, deadline - time.monotonic())))
        try:
            msg = notify.recv(4096).decode("utf-8", "replace")
        except socket.timeout:
            done, _ = os.waitpid(pid, os.WNOHANG)
            if done:
                say("pid %d exited before READY=1" % pid)
                return False
            continue
        say("notify: %s" % msg.replace("\n", " | "))
        if "READY=1" in msg.split("\n"):
            return True
    return False


def drain_notify(notify):
    notify.settimeout(0)
    while True:
        try:
            say("notify: %s" % notify.recv(4096).decode("utf-8", "replace").replace("\n", " | "))
        except (BlockingIOError, socket.timeout):
            return


def stop(pid, limit=10.0):
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            say("pid %d exited, status %d" % (pid, os.waitstatus_to_exitcode(status)))
            return os.waitstatus_to_exitcode(status) == 0
        time.sleep(0.01)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    say("pid %d killed after %.0f s" % (pid, limit))
    return False


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--listen", action="append", required=True, help="ADDR:PORT (repeatable)")
    ap.add_argument("--restart-after", type=float, required=True)
    ap.add_argument("--stop-after", type=float, required=True)
    ap.add_argument("--mode", choices=("overlap", "stop-start"), default="overlap")
    ap.add_argument("--log", default="/dev/null", help="the daemon's stderr (appended)")
    ap.add_argument("--notify", default="/tmp/sd_launch.%d.notify" % os.getpid())
    ap.add_argument("argv", nargs="+", help="the daemon and its arguments (after --)")
    o = ap.parse_args()

    socks = bind_sockets([parse_addr(a) for a in o.listen])
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    if os.path.exists(o.notify):
        os.unlink(o.notify)
    notify.bind(o.notify)
    ok = True
    try:
        old = spawn(o.argv, socks, o.notify, o.log)
        ok &= wait_ready(notify, old, 30)
        time.sleep(max(0.0, o.restart_after - (time.monotonic() - START)))
        if o.mode == "overlap":
            new = spawn(o.argv, socks, o.notify, o.log)
            ok &= wait_ready(notify, new, 30)
            ok &= stop(old)
        else:
            ok &= stop(old)
            new = spawn(o.argv, socks, o.notify, o.log)
            ok &= wait_ready(notify, new, 30)
        drain_notify(notify)
        time.sleep(max(0.0, o.stop_after - (time.monotonic() - START)))
        ok &= stop(new)
        drain_notify(notify)
    finally:
        notify.close()
        os.unlink(o.notify)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
