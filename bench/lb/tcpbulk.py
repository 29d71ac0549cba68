#!/usr/bin/env python3
"""TCP bulk transfer for bench/lb/run.

  tcpbulk.py serve PORT           accept connections; send 1 MiB buffers to each until it closes
  tcpbulk.py read PORT SECONDS    connect, read and discard for SECONDS, print MB/s (10^6 bytes)
"""

import socket
import sys
import threading
import time

CHUNK = 1 << 20


def serve(port):
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", port))
    ls.listen(64)
    payload = bytes(range(256)) * (CHUNK // 256)

    def pump(conn):
        with conn:
            try:
                while True:
                    conn.sendall(payload)
            except OSError:
                pass

    while True:
        conn, _ = ls.accept()
        threading.Thread(target=pump, args=(conn,), daemon=True).start()


def read(port, seconds):
    s = socket.create_connection(("127.0.0.1", port))
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    total = 0
    # Let the pipe fill before timing.
    warm = time.time() + 0.5
    while time.time() < warm:
        total += s.recv_into(view)
    total = 0
    start = time.time()
    end = start + seconds
    while True:
        n = s.recv_into(view)
        if n == 0:
            break
        total += n
        if time.time() >= end:
            break
    elapsed = time.time() - start
    s.close()
    print(f"{total / elapsed / 1e6:.1f} MB/s")


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve(int(sys.argv[2]))
    else:
        read(int(sys.argv[2]), float(sys.argv[3]))
