"""bench/closed_loop.py — the closed-loop DNS driver of bench/callgrind.sh and bench/cost.sh: one
question outstanding at a time, to 127.0.0.1 only, so that every answer costs the server the same
whatever the machine does. It only sends questions and reads answers (and, for cost.sh, GETs
/metrics); the scripts that run it count the server's instructions.

  closed_loop.py wait PORT NAME
      asks NAME type A until PORT answers (60 s at most); exit status 1 when it never did.
  closed_loop.py ask PORT NAMES COUNT [EVERY MPORT]
      COUNT questions type A, cycling over the names of the file NAMES (the first word of each
      line), each waited for (5 s at most); prints how many were answered NOERROR. With EVERY
      and MPORT (not 0): a GET http://127.0.0.1:MPORT/metrics after every EVERY questions, and
      the number of those scrapes is printed after the answers.
"""

import socket
import struct
import sys
import time
import urllib.request


def query(sock, port, name, qid):
    """Sends NAME type A with id QID and returns the rcode of the answer with that id."""
    wire = b"".join(bytes([len(l)]) + l.encode() for l in name.rstrip(".").split(".")) + b"\0"
    sock.sendto(struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0) + wire + b"\0\1\0\1",
                ("127.0.0.1", port))
    while True:
        data = sock.recv(4096)
        if len(data) >= 12 and struct.unpack(">H", data[:2])[0] == qid:
            return data[3] & 0xF


def wait(sock, port, name):
    sock.settimeout(0.5)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            query(sock, port, name, 1)
            return 0
        except OSError:
            time.sleep(0.2)
    return 1


def ask(sock, port, names_file, count, every, mport):
    names = [l.split()[0] for l in open(names_file) if l.strip()]
    sock.settimeout(5.0)
    ok = scrapes = 0
    for i in range(count):
        try:
            ok += query(sock, port, names[i % len(names)], i & 0xFFFF) == 0
        except OSError:
            pass
        if mport and (i + 1) % every == 0:
            url = "http://127.0.0.1:%d/metrics" % mport
            with urllib.request.urlopen(url, timeout=30) as r:
                r.read()
            scrapes += 1
    if every:
        print(ok, scrapes)
    else:
        print(ok)


def main(argv):
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    if len(argv) == 4 and argv[1] == "wait":
        return wait(sock, int(argv[2]), argv[3])
    if len(argv) in (5, 7) and argv[1] == "ask":
        every, mport = (int(argv[5]), int(argv[6])) if len(argv) == 7 else (0, 0)
        if len(argv) == 5 or every > 0:
            ask(sock, int(argv[2]), argv[3], int(argv[4]), every, mport)
            return 0
    print(__doc__.split("\n\n", 1)[1], file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
