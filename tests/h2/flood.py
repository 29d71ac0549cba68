"""Hostile HTTP/2 clients, frame by frame (`hyperframe` and `hpack`, from the `h2` package).

    python flood.py HOST PORT MODE [COUNT]

Opens one TLS connection (ALPN h2, certificate not checked), sends the client preface and an
empty SETTINGS, then behaves as MODE says and prints what the server answered, one line per
finding, ending with `end`:

- `streams COUNT`: COUNT requests (GET /slow) on COUNT streams at once, then for 3 s counts
  what comes back: `refused N` (RST_STREAM REFUSED_STREAM), `reset N` (other RST_STREAM codes),
  `responses N`; prints `held`, waits for a line on stdin (the test looks at the server
  meanwhile), then closes.
- `continuation COUNT`: HEADERS without END_HEADERS, then COUNT empty CONTINUATION frames.
- `window`: WINDOW_UPDATE on the connection that takes its window past 2^31-1.
- `window-stream`: the same on an open stream.
- `settings COUNT` / `ping COUNT`: COUNT SETTINGS (PING) frames without ever reading the
  answers; prints `closed-after SECONDS` when the server drops the connection, or
  `open-after SECONDS` when all were sent and the connection still stands 10 s later.
- `no-path`, `uppercase`, `connection-header`, `transfer-encoding`, `connect`: one request with
  that defect (no `:path` nor `:authority`, a Host field instead; a header name with capitals; `connection:
  keep-alive`; `transfer-encoding: chunked`; a CONNECT).

Answers are printed as `goaway CODE`, `rst CODE`, `status NNN`, or `eof` when the server closed
without a GOAWAY; at most 5 s are spent waiting for them.
"""
import socket
import ssl
import sys
import time

import hpack
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)
from h2.errors import ErrorCodes

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
BASE = [(":method", "GET"), (":scheme", "https"), (":authority", "localhost"), (":path", "/")]


def code(n: int) -> str:
    try:
        return ErrorCodes(n).name
    except ValueError:
        return str(n)


class Client:
    def __init__(self, host: str, port: int) -> None:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        ctx.set_alpn_protocols(["h2"])
        raw = socket.create_connection((host, port))
        self.sock = ctx.wrap_socket(raw, server_hostname="localhost")
        assert self.sock.selected_alpn_protocol() == "h2", self.sock.selected_alpn_protocol()
        self.buf = b""
        self.encoder = hpack.Encoder()
        self.decoder = hpack.Decoder()
        self.send(PREFACE + SettingsFrame(0).serialize())

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def headers_block(self, headers) -> bytes:
        # No Huffman and no normalisation: the bytes go out exactly as given.
        return self.encoder.encode(headers, huffman=False)

    def request(self, stream: int, headers, end_stream: bool = True) -> None:
        f = HeadersFrame(stream)
        f.data = self.headers_block(headers)
        f.flags.add("END_HEADERS")
        if end_stream:
            f.flags.add("END_STREAM")
        self.send(f.serialize())

    def frames(self, seconds: float):
        """Yields the server's frames for up to `seconds` (None once at EOF), acking SETTINGS
        and PINGs like a real client."""
        deadline = time.monotonic() + seconds
        while True:
            while len(self.buf) >= 9:
                frame, length = Frame.parse_frame_header(memoryview(self.buf[:9]))
                if len(self.buf) < 9 + length:
                    break
                frame.parse_body(memoryview(self.buf[9:9 + length]))
                self.buf = self.buf[9 + length:]
                if isinstance(frame, SettingsFrame) and "ACK" not in frame.flags:
                    self.send(SettingsFrame(0, flags=["ACK"]).serialize())
                elif isinstance(frame, PingFrame) and "ACK" not in frame.flags:
                    ack = PingFrame(0, flags=["ACK"])
                    ack.opaque_data = frame.opaque_data
                    self.send(ack.serialize())
                yield frame
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65536)
            except (socket.timeout, TimeoutError):
                return
            except (ConnectionResetError, BrokenPipeError, ssl.SSLError):
                data = b""
            if not data:
                yield None
                return
            self.buf += data

    def answer(self, stream: int, seconds: float = 5.0) -> None:
        """Prints the first decisive answer: a GOAWAY, a reset or response of `stream`, EOF."""
        for f in self.frames(seconds):
            if f is None:
                print("eof", flush=True)
                return
            if isinstance(f, GoAwayFrame):
                print(f"goaway {code(f.error_code)}", flush=True)
                return
            if isinstance(f, RstStreamFrame) and f.stream_id == stream:
                print(f"rst {code(f.error_code)}", flush=True)
                return
            if isinstance(f, HeadersFrame) and f.stream_id == stream:
                status = dict(self.decoder.decode(f.data)).get(":status")
                print(f"status {status}", flush=True)
                return
        print("silence", flush=True)


def flood(c: Client, frame: bytes, count: int) -> None:
    """Sends `frame` `count` times without reading; reports when the server drops us."""
    started = time.monotonic()
    c.sock.settimeout(30)
    batch = frame * 100
    try:
        for _ in range(count // 100):
            c.send(batch)
        # Everything went out: does the server still hold the connection?
        for f in c.frames(10):
            if f is None:
                raise ConnectionResetError
        print(f"open-after {time.monotonic() - started:.1f}", flush=True)
    except (ConnectionResetError, BrokenPipeError, ssl.SSLError, socket.timeout, TimeoutError, OSError) as e:
        if isinstance(e, (socket.timeout, TimeoutError)):
            print(f"open-after {time.monotonic() - started:.1f}", flush=True)
        else:
            print(f"closed-after {time.monotonic() - started:.1f}", flush=True)


def main() -> None:
    host, port, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    count = int(sys.argv[4]) if len(sys.argv) > 4 else 0
    c = Client(host, port)
    if mode == "streams":
        for i in range(count):
            c.request(1 + 2 * i, BASE[:3] + [(":path", "/slow")])
        refused = reset = responses = 0
        for f in c.frames(3):
            if f is None:
                break
            if isinstance(f, RstStreamFrame):
                if f.error_code == ErrorCodes.REFUSED_STREAM:
                    refused += 1
                else:
                    reset += 1
            elif isinstance(f, HeadersFrame):
                responses += 1
        print(f"refused {refused}", flush=True)
        print(f"reset {reset}", flush=True)
        print(f"responses {responses}", flush=True)
        print("held", flush=True)
        sys.stdin.readline()
    elif mode == "continuation":
        block = c.headers_block(BASE)
        h = HeadersFrame(1)
        h.data = block
        h.flags.add("END_STREAM")
        frames = h.serialize()
        for _ in range(count):
            frames += ContinuationFrame(1).serialize()
        try:
            c.send(frames)
        except (ConnectionResetError, BrokenPipeError, ssl.SSLError):
            pass
        c.answer(1)
    elif mode == "window":
        w = WindowUpdateFrame(0)
        w.window_increment = 2**31 - 1
        c.send(w.serialize())
        c.answer(0)
    elif mode == "window-stream":
        c.request(1, BASE[:3] + [(":path", "/slow")])
        w = WindowUpdateFrame(1)
        w.window_increment = 2**31 - 1
        c.send(w.serialize())
        c.answer(1)
    elif mode == "settings":
        s = SettingsFrame(0)
        s.settings = {SettingsFrame.ENABLE_PUSH: 0}
        flood(c, s.serialize(), count)
    elif mode == "ping":
        p = PingFrame(0)
        p.opaque_data = b"12345678"
        flood(c, p.serialize(), count)
    elif mode == "no-path":
        c.request(1, [(":method", "GET"), (":scheme", "https"), ("host", "localhost")])
        c.answer(1)
    elif mode == "uppercase":
        c.request(1, BASE + [("X-Upper", "1")])
        c.answer(1)
    elif mode == "connection-header":
        c.request(1, BASE + [("connection", "keep-alive")])
        c.answer(1)
    elif mode == "transfer-encoding":
        c.request(1, BASE + [("transfer-encoding", "chunked")], end_stream=False)
        d = DataFrame(1)
        d.data = b"0\r\n\r\n"
        d.flags.add("END_STREAM")
        c.send(d.serialize())
        c.answer(1)
    elif mode == "connect":
        c.request(1, [(":method", "CONNECT"), (":authority", "example.com:443")])
        c.answer(1)
    else:
        raise SystemExit(f"unknown mode {mode}")
    print("end", flush=True)
    c.sock.close()


if __name__ == "__main__":
    main()
