#!/usr/bin/env python3
"""A WebSocket client that sends as fast as it can and never reads: the
stalled peer of issue 10 item 8. Opens one session through wsrelay, writes
masked 16 KiB binary frames until nothing more is taken for a second, then
prints the kernel socket memory (ss -tm: rmem_alloc + wmem_queued) that the
wsrelay process `pid` holds for it, as one JSON line.

    loadtest/stalled_client.py HOST:PORT PATH PID
"""
import base64, json, os, re, socket, subprocess, sys, time

host, port = sys.argv[1].rsplit(":", 1)
path, pid = sys.argv[2], int(sys.argv[3])
s = socket.create_connection((host, int(port)), timeout=5)
key = base64.b64encode(os.urandom(16)).decode()
s.sendall((f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
           f"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\n\r\n").encode())
head = b""
while b"\r\n\r\n" not in head:
    head += s.recv(1)
assert head.startswith(b"HTTP/1.1 101"), head
payload = bytes(16384)
frame = bytes([0x82, 0xFF]) + (16384).to_bytes(8, "big") + b"\0\0\0\0" + payload  # mask key 0: payload unchanged
s.setblocking(False)
sent, at, idle_since = 0, 0, time.monotonic()
while time.monotonic() - idle_since < 1.0:
    try:
        n = s.send(frame[at:])  # may be partial: go on from where it stopped
        sent, at = sent + n, (at + n) % len(frame)
        idle_since = time.monotonic()
    except BlockingIOError:
        time.sleep(0.01)
out = subprocess.run(["ss", "-tmnp", "state", "established"], capture_output=True, text=True).stdout
lines, total, sockets = out.splitlines(), 0, 0
for i, l in enumerate(lines):
    if f"pid={pid}," in l and i + 1 < len(lines):
        m = re.search(r"skmem:\(r(\d+),rb(\d+),t(\d+),tb(\d+),f(\d+),w(\d+)", lines[i + 1] + l)
        if m:
            r, rb, t, tb, f, w = map(int, m.groups())
            total += r + w
            sockets += 1
print(json.dumps({"sent_bytes": sent, "wsrelay_sockets": sockets, "kernel_bytes": total}))
