#!/usr/bin/env python3
"""CPU a trickled handshake costs wsrelay (issue 10 item 9): N connections,
each sending an 8 KiB upgrade request one byte per TCP segment (1 ms apart),
until wsrelay answers. Prints one JSON line: wsrelay's CPU (user + system,
from /proc) per connection, the answers, and the bytes each sent first.

    loadtest/trickle.py HOST:PORT PID [N]
"""
import json, os, socket, sys, threading, time

host, port = sys.argv[1].rsplit(":", 1)
pid, n = int(sys.argv[2]), int(sys.argv[3]) if len(sys.argv) > 3 else 20
tick = os.sysconf("SC_CLK_TCK")

def cpu_s():
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / tick

req = ("GET /ws/echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
       "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
       f"X-Pad: {'a' * 8000}\r\n\r\n").encode()
results = []

def one():
    s = socket.create_connection((host, int(port)))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.settimeout(0.001)
    sent, answer = 0, b""
    for b in req:
        try:
            s.send(bytes([b]))
            sent += 1
        except OSError:
            break
        try:
            answer = s.recv(100)
            break  # an answer, or the connection closed
        except socket.timeout:
            pass
    results.append((sent, answer[:12].decode(errors="replace")))
    s.close()

before, t0 = cpu_s(), time.monotonic()
threads = [threading.Thread(target=one) for _ in range(n)]
for t in threads: t.start()
for t in threads: t.join()
used = cpu_s() - before
print(json.dumps({"connections": n, "wall_s": round(time.monotonic() - t0, 2),
                  "wsrelay_cpu_ms_per_connection": round(used * 1000 / n, 2),
                  "answers": sorted({a for _, a in results}),
                  "max_bytes_sent": max(s for s, _ in results)}))
