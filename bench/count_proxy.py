#!/usr/bin/env python3
"""A counting, optionally delaying HTTP proxy in front of AWS API emulators (DynamoDB Local,
moto's SNS and KMS), one process for all of them so that calls to different services are on one
clock.

    count_proxy.py [--delay-ms SERVICE=MS ...] SERVICE=PORT=UPSTREAM_URL ...

Listens on 127.0.0.1:PORT for each SERVICE (a name: dynamodb, sns, kms) and forwards every
request to its UPSTREAM_URL unchanged, except that DynamoDB requests are asked for their
consumed capacity ("ReturnConsumedCapacity": "TOTAL"; DynamoDB Local ignores the signature,
which this changes), and counts the calls by operation: the `X-Amz-Target` header (the JSON
protocols of DynamoDB and KMS) or the `Action` form field (SNS's query protocol). With
`--delay-ms SERVICE=MS` every call to SERVICE is held MS milliseconds before it is forwarded:
the in-region round trip the emulators on loopback do not have.

Sequential round trips: a call that starts while no other call is under way starts a round;
calls overlapping it in time belong to it. A request's critical path makes as many sequential
AWS round trips as the rounds counted while it was served.

Units are counted as DynamoDB bills them: DynamoDB Local reports a transaction's capacity like
that of plain reads and writes, but DynamoDB charges a transactional read or write twice
(2 WRU per item up to 1 KB, 2 RRU per item up to 4 KB), so TransactWriteItems and
TransactGetItems units are doubled here.

Its own endpoints on every port, answered and not forwarded (the totals of all services):
  GET  /_counts  {"calls": {op: n}, "item_writes": {pk up to its first #: items written},
                  "read_units": r, "write_units": w, "bytes_out": b,
                  "rounds": n, "delay_ms": injected delay on the rounds' path, "inflight": calls under way, "idle_ms": since the last call ended}
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
            self.item_writes = {}
            self.read_units = 0.0
            self.write_units = 0.0
            self.bytes_out = 0
            self.rounds = 0
            # The injected delay on the critical path: per round, the longest held call's.
            self.delay_ms = 0.0
            self.round_delay_ms = 0.0
            self.inflight = 0
            self.last = time.monotonic()

    def begin(self, delay_ms):
        with self.lock:
            if self.inflight == 0:
                self.rounds += 1
                self.round_delay_ms = 0.0
            if delay_ms > self.round_delay_ms:
                self.delay_ms += delay_ms - self.round_delay_ms
                self.round_delay_ms = delay_ms
            self.inflight += 1

    def add(self, op, sent, read_units, write_units, written=()):
        with self.lock:
            for kind in written:
                self.item_writes[kind] = self.item_writes.get(kind, 0) + 1
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
                "item_writes": dict(sorted(self.item_writes.items())),
                "read_units": round(self.read_units, 3),
                "write_units": round(self.write_units, 3),
                "bytes_out": self.bytes_out,
                "rounds": self.rounds,
                "delay_ms": round(self.delay_ms, 3),
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


def written_kinds(op, request):
    """The kinds of the items a DynamoDB write request writes (a transaction's condition checks
    included, as they are billed as writes), once per write unit of an item up to 1 KB: each
    item's partition key up to its first `#`."""
    keys = []
    if op == "PutItem":
        keys.append(request.get("Item"))
    elif op in ("UpdateItem", "DeleteItem"):
        keys.append(request.get("Key"))
    elif op == "TransactWriteItems":
        for item in request.get("TransactItems", []):
            for action, member in (("Put", "Item"), ("Update", "Key"), ("Delete", "Key"),
                                   ("ConditionCheck", "Key")):
                if action in item:
                    keys.append(item[action].get(member))
    elif op == "BatchWriteItem":
        for writes in request.get("RequestItems", {}).values():
            for w in writes:
                keys.append((w.get("PutRequest") or {}).get("Item") or (w.get("DeleteRequest") or {}).get("Key"))
    # DynamoDB bills a transaction's item twice: the kind is listed once per write unit of an
    # item up to 1 KB, so a partition's write units per flow can be read off.
    factor = 2 if op == "TransactWriteItems" else 1
    kinds = []
    for key in keys:
        pk = ((key or {}).get("pk") or {}).get("S", "")
        kinds.extend([pk.split("#", 1)[0] or "?"] * factor)
    return kinds


def parse(argv):
    """([(service, port, upstream)], {service: delay seconds}) from the command line."""
    services, delays, args = [], {}, list(argv)
    while args:
        arg = args.pop(0)
        if arg == "--delay-ms":
            service, _, ms = args.pop(0).partition("=")
            delays[service] = float(ms) / 1000
            continue
        service, port, upstream = arg.split("=", 2)
        services.append((service, int(port), urllib.parse.urlsplit(upstream)))
    if not services:
        sys.exit(__doc__)
    return services, delays


def main():
    services, delays = parse(sys.argv[1:])
    counts = Counts()
    for service, port, upstream in services:
        server = http.server.ThreadingHTTPServer(
            ("127.0.0.1", port), handler(counts, upstream, delays.get(service, 0.0))
        )
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
    threading.Event().wait()


def handler(counts, upstream, delay):
    """The request handler class forwarding to `upstream`, each call held `delay` seconds."""
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
            written = []
            if op in CAPACITY_OPS and target.startswith("DynamoDB_"):
                try:
                    request = json.loads(body)
                    written = written_kinds(op, request)
                    request["ReturnConsumedCapacity"] = "TOTAL"
                    body = json.dumps(request).encode()
                except (ValueError, AttributeError):
                    pass
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
            headers["Content-Length"] = str(len(body))
            headers["Host"] = upstream.netloc
            counts.begin(delay * 1000)
            if delay:
                time.sleep(delay)
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
            counts.add(op, len(body), read, write, written)
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

    return Handler


if __name__ == "__main__":
    main()
