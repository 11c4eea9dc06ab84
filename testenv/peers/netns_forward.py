#!/usr/bin/env python3
"""TCP forwarder from the host's loopback into a private network namespace (stdlib only).

A server started with `unshare -n` listens on 127.0.0.1 inside its own namespace: invisible
to the host, so several of them never collide and the host's `lo` is left alone. This
process bridges the two: it binds its listening sockets in the namespace it was started in
(the host), then joins the target namespace with setns(2) -- sockets keep the namespace they
were created in -- so every connection accepted on the host is relayed to a fresh
connection made inside the target namespace. Byte-for-byte: LDAP, StartTLS, LDAPS, Kerberos
over TCP all pass through unchanged.

usage: netns_forward.py --netns /proc/PID/ns/net --listen-ip 127.x.y.z
                        --map 389:389 --map 636:636 ... [--target-ip 127.0.0.1]
                        [--watch-pid PID] [--ephemeral-fallback]

Any 127.0.0.0/8 address can be bound on Linux without adding it to `lo` (the local route
covers the whole /8). If a listen port is taken on that address and --ephemeral-fallback
is given, ALL listeners are bound to kernel-chosen ports on the same address instead.
Prints "FORWARD <listen-port> <target-port>" per mapping and then "READY" (flushed), and
exits when --watch-pid is gone (or is a zombie), on SIGTERM/SIGINT, or exit code 3 when a
port is taken and there is no fallback. Needs CAP_SYS_ADMIN (root) for setns.
"""
import argparse
import asyncio
import ctypes
import errno
import os
import signal
import socket
import sys

CLONE_NEWNET = 0x40000000


def setns(path):
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(path, os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns({path}): {os.strerror(err)}")
    finally:
        os.close(fd)


def bind_all(ip, ports):
    socks = []
    try:
        for port in ports:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            socks.append(s)
            s.bind((ip, port))
            s.listen(128)
            s.setblocking(False)
    except OSError:
        for s in socks:
            s.close()
        raise
    return socks


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            state = f.read().rsplit(b")", 1)[1].split()[0]
        return state not in (b"Z", b"X")
    except (OSError, IndexError):
        return False


async def pipe(reader, writer):
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (OSError, asyncio.IncompleteReadError):
        pass


async def relay(client_r, client_w, target):
    try:
        up_r, up_w = await asyncio.open_connection(*target)
    except OSError:
        client_w.close()
        return
    for s in (client_w, up_w):
        sock = s.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    await asyncio.gather(pipe(client_r, up_w), pipe(up_r, client_w))
    for w in (client_w, up_w):
        w.close()


async def serve(socks, targets, watch_pid):
    servers = []
    for s, target in zip(socks, targets):
        handler = (lambda t: lambda r, w: relay(r, w, t))(target)
        servers.append(await asyncio.start_server(handler, sock=s))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    while not stop.is_set():
        if watch_pid and not alive(watch_pid):
            break
        try:
            await asyncio.wait_for(stop.wait(), 0.5)
        except asyncio.TimeoutError:
            pass
    for srv in servers:
        srv.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--netns", required=True)
    ap.add_argument("--listen-ip", required=True)
    ap.add_argument("--target-ip", default="127.0.0.1")
    ap.add_argument("--map", action="append", required=True, help="LISTENPORT:TARGETPORT")
    ap.add_argument("--watch-pid", type=int, default=0)
    ap.add_argument("--ephemeral-fallback", action="store_true")
    a = ap.parse_args()
    pairs = [tuple(int(x) for x in m.split(":", 1)) for m in a.map]
    try:
        socks = bind_all(a.listen_ip, [p for p, _ in pairs])
    except OSError as e:
        if e.errno != errno.EADDRINUSE or not a.ephemeral_fallback:
            print(f"bind {a.listen_ip}: {e}", file=sys.stderr)
            sys.exit(3)
        socks = bind_all(a.listen_ip, [0 for _ in pairs])
    setns(a.netns)  # from here on, new sockets are created inside the target namespace
    for s, (_, tport) in zip(socks, pairs):
        print(f"FORWARD {s.getsockname()[1]} {tport}")
    print("READY", flush=True)
    asyncio.run(serve(socks, [(a.target_ip, t) for _, t in pairs], a.watch_pid))


if __name__ == "__main__":
    main()
