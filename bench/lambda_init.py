#!/usr/bin/env python3
"""Cold start of the Lambda binaries through the Lambda Runtime API, as Lambda runs them.

    lambda_init.py RUNS OUT.json NAME=BOOTSTRAP=EVENT.json [...]

For every NAME, RUNS times: serves the Runtime API (2018-06-01) on a free 127.0.0.1 port, starts
BOOTSTRAP with AWS_LAMBDA_RUNTIME_API pointing at it (plus the AWS_LAMBDA_* variables Lambda
sets, and this process's environment: TABLE_NAME, ISSUER, endpoints, ...), hands it EVENT twice
and records

  init_ms   process start -> its first GET /runtime/invocation/next (what Lambda reports as
            "Init Duration": the context, the AWS SDK configuration, the signing key);
  first_ms  process start -> the response to the first event (a cold invocation as the
            caller sees it, without Lambda's own sandbox set-up);
  warm_ms   the second event's GET /next -> its response (a warm invocation);
  status    the statusCode of the first response (HTTP functions), or "ok" / "error";
  rss_kib   the process's peak RSS (VmHWM) after both events.

Writes {NAME: {"init_ms": median, "first_ms": median, "warm_ms": median, "runs": [...],
"status": ..., "rss_kib": max}} to OUT.json. A function that posts to /runtime/init/error or
exits early is reported with its error instead of timings.
"""
import http.server
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid

INVOCATIONS = 2
PREFIX = "/2018-06-01/runtime"


class Emulator:
    """One Runtime API for one process: INVOCATIONS events, then /next blocks until closed."""

    def __init__(self, event: bytes, name: str):
        self.event = event
        self.name = name
        self.lock = threading.Lock()
        self.given = 0
        self.next_at = []  # perf_counter of each GET /next
        self.done_at = []  # perf_counter of each response or error
        self.outcomes = []  # (kind, body)
        self.init_error = None
        self.finished = threading.Event()
        self.closed = threading.Event()
        emulator = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def reply(self, status, body=b"{}", headers=None):
                try:
                    self.send_response(status)
                    for key, value in (headers or {}).items():
                        self.send_header(key, value)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:
                    pass  # the process was stopped while waiting for its next event

            def body(self):
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length) if length else b""

            def do_GET(self):
                if self.path != f"{PREFIX}/invocation/next":
                    return self.reply(404)
                now = time.perf_counter()
                with emulator.lock:
                    emulator.next_at.append(now)
                    index = emulator.given
                    emulator.given += 1
                if index >= INVOCATIONS:
                    emulator.finished.set()
                    emulator.closed.wait(30)
                    return self.reply(410)
                deadline = int(time.time() * 1000) + 30_000
                self.reply(
                    200,
                    emulator.event,
                    {
                        "Lambda-Runtime-Aws-Request-Id": str(uuid.uuid4()),
                        "Lambda-Runtime-Deadline-Ms": str(deadline),
                        "Lambda-Runtime-Invoked-Function-Arn":
                            f"arn:aws:lambda:us-east-1:123456789012:function:{emulator.name}",
                        "Lambda-Runtime-Trace-Id":
                            "Root=1-5bef4de7-ad49b0e87f6ef6c87fc2e700;Parent=9a9197af755a6419;Sampled=0",
                    },
                )

            def do_POST(self):
                now = time.perf_counter()
                body = self.body()
                if self.path == f"{PREFIX}/init/error":
                    emulator.init_error = body.decode("utf-8", "replace")
                    emulator.finished.set()
                    return self.reply(202)
                if self.path.startswith(f"{PREFIX}/invocation/"):
                    kind = self.path.rsplit("/", 1)[-1]
                    with emulator.lock:
                        emulator.done_at.append(now)
                        emulator.outcomes.append((kind, body))
                    return self.reply(202)
                return self.reply(404)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.closed.set()
        self.server.shutdown()
        self.server.server_close()


def peak_rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def status_of(kind, body):
    if kind != "response":
        return "error"
    try:
        value = json.loads(body)
    except ValueError:
        return "ok"
    if isinstance(value, dict) and "statusCode" in value:
        return value["statusCode"]
    return "ok"


def once(name, bootstrap, event):
    emulator = Emulator(event, name)
    env = {
        **os.environ,
        "AWS_LAMBDA_RUNTIME_API": f"127.0.0.1:{emulator.port}",
        "AWS_LAMBDA_FUNCTION_NAME": name,
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "128",
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{name}",
        "AWS_LAMBDA_LOG_STREAM_NAME": "bench",
        "AWS_LAMBDA_LOG_FORMAT": "JSON",
    }
    started = time.perf_counter()
    proc = subprocess.Popen(
        [bootstrap], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        deadline = started + 60
        while not emulator.finished.wait(0.005):
            if proc.poll() is not None:
                emulator.finished.wait(0.2)
                break
            if time.perf_counter() > deadline:
                break
        rss = peak_rss_kib(proc.pid)
    finally:
        proc.terminate()
        try:
            _, stderr = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, stderr = proc.communicate()
        emulator.close()
    if emulator.init_error is not None:
        return {"error": f"init error: {emulator.init_error[:300]}"}
    if len(emulator.done_at) < INVOCATIONS:
        tail = stderr.decode("utf-8", "replace").strip().splitlines()[-3:]
        return {"error": f"exited with {proc.returncode} after {len(emulator.done_at)} "
                         f"invocation(s): {' | '.join(tail)[:300]}"}
    return {
        "init_ms": round((emulator.next_at[0] - started) * 1000, 2),
        "first_ms": round((emulator.done_at[0] - started) * 1000, 2),
        "warm_ms": round((emulator.done_at[1] - emulator.next_at[1]) * 1000, 2),
        "status": status_of(*emulator.outcomes[0]),
        "rss_kib": rss,
    }


def main():
    runs, out, specs = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
    result = {}
    for spec in specs:
        name, bootstrap, event_path = spec.split("=", 2)
        with open(event_path, "rb") as f:
            event = f.read()
        samples = [once(name, bootstrap, event) for _ in range(runs)]
        errors = [s["error"] for s in samples if "error" in s]
        if errors:
            result[name] = {"error": errors[0], "runs": samples}
            print(f"{name}: {errors[0]}", file=sys.stderr)
            continue
        result[name] = {
            key: statistics.median(s[key] for s in samples)
            for key in ("init_ms", "first_ms", "warm_ms")
        }
        result[name]["status"] = samples[0]["status"]
        rss = [s["rss_kib"] for s in samples if s["rss_kib"]]
        result[name]["rss_kib"] = max(rss) if rss else None
        result[name]["runs"] = samples
        print(f"{name}: init {result[name]['init_ms']} ms, first answer "
              f"{result[name]['first_ms']} ms ({result[name]['status']}), warm "
              f"{result[name]['warm_ms']} ms", file=sys.stderr)
    with open(out, "w") as f:
        json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
