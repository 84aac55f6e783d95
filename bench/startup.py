#!/usr/bin/env python3
"""Process start to first answered request, as the median of N runs.

    startup.py RUNS PATH COMMAND... ({port} in COMMAND is replaced by a free loopback port)

Starts COMMAND, polls GET PATH on 127.0.0.1:<port> every millisecond until it answers 200,
stops the process, and prints {"runs_ms": [...], "median_ms": m} as JSON.
"""
import http.client
import json
import socket
import statistics
import subprocess
import sys
import time


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def once(path, command):
    port = free_port()
    argv = [a.replace("{port}", str(port)) for a in command]
    started = time.perf_counter()
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**__import__("os").environ, "PORT": str(port)},
    )
    try:
        deadline = started + 60
        while time.perf_counter() < deadline:
            if proc.poll() is not None:
                raise SystemExit(f"{argv[0]} exited with {proc.returncode} before answering")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                conn.request("GET", path)
                response = conn.getresponse()
                response.read()
                conn.close()
                if response.status == 200:
                    return (time.perf_counter() - started) * 1000
            except OSError:
                pass
            time.sleep(0.001)
        raise SystemExit(f"{argv[0]} did not answer {path} within 60 s")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main():
    runs, path, command = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
    times = [round(once(path, command), 1) for _ in range(runs)]
    print(json.dumps({"runs_ms": times, "median_ms": statistics.median(times)}))


if __name__ == "__main__":
    main()
