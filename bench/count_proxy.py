#!/usr/bin/env python3
"""A counting HTTP proxy in front of an AWS API emulator (DynamoDB Local, moto's SNS).

    count_proxy.py PORT UPSTREAM_URL

Forwards every request to UPSTREAM_URL unchanged, except that DynamoDB requests are asked for
their consumed capacity ("ReturnConsumedCapacity": "TOTAL"; DynamoDB Local ignores the
signature, which this changes), and counts the calls by operation: the `X-Amz-Target` header
(DynamoDB's JSON protocol) or the `Action` form field (SNS's query protocol).

Units are counted as DynamoDB bills them: DynamoDB Local reports a transaction's capacity like
that of plain reads and writes, but DynamoDB charges a transactional read or write twice
(2 WRU per item up to 1 KB, 2 RRU per item up to 4 KB), so TransactWriteItems and
TransactGetItems units are doubled here.

Its own endpoints, answered and not forwarded:
  GET  /_counts  {"calls": {op: n}, "read_units": r, "write_units": w, "bytes_out": b,
                  "inflight": calls under way, "idle_ms": since the last call ended}
  POST /_reset   zeroes the counters
"""
import http.client
import http.server
import json
import sys
import threading
import time
import urllib.parse

# Operations that accept ReturnConsumedCapacity.
CAPACITY_OPS = {
    "GetItem", "PutItem", "UpdateItem", "DeleteItem", "Query", "Scan", "BatchGetItem",
    "BatchWriteItem", "TransactGetItems", "TransactWriteItems",
}
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade",
              "proxy-authorization", "proxy-authenticate", "content-length", "host"}


class Counts:
    def __init__(self):
        self.lock = threading.Lock()
        self.reset()

    def reset(self):
        with getattr(self, "lock", threading.Lock()):
            self.calls = {}
            self.read_units = 0.0
            self.write_units = 0.0
            self.bytes_out = 0
            self.inflight = 0
            self.last = time.monotonic()

    def begin(self):
        with self.lock:
            self.inflight += 1

    def add(self, op, sent, read_units, write_units):
        with self.lock:
            self.inflight -= 1
            self.last = time.monotonic()
            self.calls[op] = self.calls.get(op, 0) + 1
            self.bytes_out += sent
            self.read_units += read_units
            self.write_units += write_units

    def json(self):
        with self.lock:
            return {
                "calls": dict(sorted(self.calls.items())),
                "read_units": round(self.read_units, 3),
                "write_units": round(self.write_units, 3),
                "bytes_out": self.bytes_out,
                "inflight": self.inflight,
                "idle_ms": round((time.monotonic() - self.last) * 1000, 1),
            }


TRANSACTIONS = {"TransactWriteItems", "TransactGetItems"}


def units(consumed, op):
    """(read, write) capacity units of a ConsumedCapacity value (one object or a list), as
    billed: doubled for transactions."""
    if not consumed:
        return 0.0, 0.0
    factor = 2.0 if op in TRANSACTIONS else 1.0
    items = consumed if isinstance(consumed, list) else [consumed]
    read = write = 0.0
    for c in items:
        r = c.get("ReadCapacityUnits")
        w = c.get("WriteCapacityUnits")
        if r is None and w is None:
            # Only the total is given: reads and writes are told apart by the operation.
            total = float(c.get("CapacityUnits") or 0)
            if op in ("GetItem", "Query", "Scan", "BatchGetItem", "TransactGetItems"):
                read += total
            else:
                write += total
        else:
            read += float(r or 0)
            write += float(w or 0)
    return read * factor, write * factor


def main():
    port, upstream = int(sys.argv[1]), urllib.parse.urlsplit(sys.argv[2])
    counts = Counts()
    local = threading.local()

    def connection():
        conn = getattr(local, "conn", None)
        if conn is None:
            conn = http.client.HTTPConnection(upstream.hostname, upstream.port, timeout=30)
            local.conn = conn
        return conn

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def answer(self, status, body, headers=()):
            self.send_response(status)
            for key, value in headers:
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def forward(self, method):
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            if self.path == "/_counts" and method == "GET":
                return self.answer(200, json.dumps(counts.json()).encode(),
                                   [("Content-Type", "application/json")])
            if self.path == "/_reset" and method == "POST":
                counts.reset()
                return self.answer(204, b"")
            target = self.headers.get("X-Amz-Target", "")
            op = target.rsplit(".", 1)[-1] if target else ""
            if not op and body:
                form = urllib.parse.parse_qs(body.decode("utf-8", "replace"))
                op = form.get("Action", [""])[0]
            op = op or f"{method} {self.path.split('?')[0]}"
            if op in CAPACITY_OPS and target.startswith("DynamoDB_"):
                try:
                    request = json.loads(body)
                    request["ReturnConsumedCapacity"] = "TOTAL"
                    body = json.dumps(request).encode()
                except ValueError:
                    pass
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
            headers["Content-Length"] = str(len(body))
            headers["Host"] = upstream.netloc
            counts.begin()
            for attempt in (1, 2):
                try:
                    conn = connection()
                    conn.request(method, self.path, body=body, headers=headers)
                    response = conn.getresponse()
                    reply = response.read()
                    break
                except (OSError, http.client.HTTPException):
                    local.conn = None
                    if attempt == 2:
                        counts.add(op, len(body), 0.0, 0.0)
                        return self.answer(502, b"upstream unreachable")
            read = write = 0.0
            if op in CAPACITY_OPS:
                try:
                    read, write = units(json.loads(reply).get("ConsumedCapacity"), op)
                except (ValueError, AttributeError):
                    pass
            counts.add(op, len(body), read, write)
            out = [(k, v) for k, v in response.getheaders() if k.lower() not in HOP_BY_HOP]
            self.answer(response.status, reply, out)

        def do_GET(self):
            self.forward("GET")

        def do_POST(self):
            self.forward("POST")

        def do_PUT(self):
            self.forward("PUT")

        def do_DELETE(self):
            self.forward("DELETE")

    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
