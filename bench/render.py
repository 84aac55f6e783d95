#!/usr/bin/env python3
"""Writes bench/REPORT.md from the raw results of bench/report.sh.

    render.py RESULTS_DIR REPORT.md [README.md]

Reads RESULTS_DIR/{startup,startup-node,lambda-sizes-*,lambda-init,count-*,load-*}.json, the
criterion medians in $CRITERION_DIR (default target/criterion)/*/*/new/{benchmark,estimates}.json,
the list prices in bench/prices.json, the Lambda memory in template.yaml and the expiry index's
key in shared/src/store/dynamodb/layout.rs. Writes RESULTS_DIR/charts.json (the numbers
bench/charts draws) and, given README.md, its cost section between <!-- cost:begin --> and
<!-- cost:end -->.
"""
import datetime
import glob
import json
import os
import platform
import re
import subprocess
import sys

from costs import load, section_costs

# Targets of issue 6: reported next to the results, not asserted.
TARGETS_US = {
    "handler/bc_authorize": 150,
    "handler/token_pending": 30,
    "tokens/mint": 60,
}
SIZE_TARGET_BYTES = 6_000_000
INIT_TARGET_MS = 40
FLOWS_TARGET = 2000
NODE_RATIO_TARGET = 10
# One ES256 signature and one verification per whole flow (issue 16), as this machine once
# measured them; a run that measured them itself (crypto-*.json) uses its own figures.
FALLBACK_SIGN_US, FALLBACK_VERIFY_US = 14, 42
RSS_TARGET_MIB = 64

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def command(*argv):
    try:
        return subprocess.run(argv, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "n/a"


def machine():
    cpu = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_kb = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": command("nproc"),
        "cpu": cpu,
        "memory": f"{mem_kb / 1024 / 1024:.1f} GiB",
        "kernel": platform.release(),
        "rustc": command("rustc", "--version"),
        "node": command("node", "--version"),
    }


def criterion():
    rows = []
    where = os.environ.get("CRITERION_DIR") or os.path.join(ROOT, "target/criterion")
    for bench in sorted(glob.glob(os.path.join(where, "**/new/benchmark.json"), recursive=True)):
        meta = load(bench)
        estimates = load(os.path.join(os.path.dirname(bench), "estimates.json"))
        if not meta or not estimates:
            continue
        rows.append(
            {
                "id": meta.get("full_id") or meta.get("title"),
                "median_ns": estimates["median"]["point_estimate"],
                "mean_ns": estimates["mean"]["point_estimate"],
            }
        )
    return rows


def us(ns):
    return f"{ns / 1000:.1f}"


def verdict(ok):
    return "✅ met" if ok else "❌ missed"


def mb(n):
    return f"{n / 1e6:.2f}"


def section_criterion(out):
    out += ["", "## Micro benchmarks (criterion, `cargo bench --profile perf --bench hot_paths -- --quick`)", ""]
    rows = criterion()
    if not rows:
        out.append("Not run (no `target/criterion` results).")
        return
    out += ["| benchmark | median (µs) | mean (µs) | target (µs) | |", "|---|---:|---:|---:|---|"]
    for r in rows:
        target = TARGETS_US.get(r["id"])
        median_us = r["median_ns"] / 1000
        out.append(
            f"| {r['id']} | {us(r['median_ns'])} | {us(r['mean_ns'])} | "
            f"{'< ' + str(target) if target else ''} | {verdict(median_us < target) if target else ''} |"
        )
    out += [
        "",
        "In-memory store, fixed clock, current-thread tokio runtime. `handler/*` build the API",
        "Gateway v2 request outside the timing and call the function's `handle` directly;",
        "`handler/token_pending` is the first poll of a fresh request (`authorization_pending`).",
    ]


def section_startup(out, results):
    out += ["", "## Local API start-up (process start → first answered `GET /.well-known/openid-configuration`)", ""]
    out += ["| server | median (ms) | runs (ms) |", "|---|---:|---|"]
    for name, label in [("startup", "ciba-local (perf profile, in-memory store, seeded)"),
                        ("startup-node", "node-oidc-provider (bench/node-op)")]:
        d = load(os.path.join(results, f"{name}.json"))
        if d:
            out.append(f"| {label} | {d['median_ms']} | {', '.join(str(t) for t in d['runs_ms'])} |")


def loads_of(results):
    loads = {}
    for path in sorted(glob.glob(os.path.join(results, "load-*.json"))):
        data = load(path)
        if data:
            loads[data["label"]] = data
    return loads


def crypto_floor(results, oc, nc, ours, node):
    """What a flow cannot spend less on, next to node/10: its two signatures, measured in this
    run on the server's core, and the kernel's time (loopback TCP) that the server was charged."""
    speeds = [load(os.path.join(results, f"crypto-{when}.json")) for when in ("before", "after")]
    speeds = [s for s in speeds if s and s.get("sign_per_s") and s.get("verify_per_s")]
    if speeds:
        sign = sum(1e6 / s["sign_per_s"] for s in speeds) / len(speeds)
        verify = sum(1e6 / s["verify_per_s"] for s in speeds) / len(speeds)
        how = (f"`openssl speed ecdsap256` on the server's core, before and after the runs: "
               f"{sign:.0f} µs a signature, {verify:.0f} µs a verification")
    else:
        sign, verify = FALLBACK_SIGN_US, FALLBACK_VERIFY_US
        how = (f"`openssl speed ecdsap256` when last measured: ~{sign} µs a signature, "
               f"~{verify} µs a verification")
    floor = sign + verify
    lines = [f"The flow's signatures alone (one ES256 verify of the device's decision, one ES256 "
             f"signature of the ID token) cost {floor:.0f} µs ({how}): ours spends "
             f"{max(oc - floor, 0):.0f} µs per flow on everything else, node-oidc-provider "
             f"{max(nc - floor, 0):.0f} µs."]
    osys, nsys = ours.get("server_sys_us_per_flow"), node.get("server_sys_us_per_flow")
    if osys is not None and nsys is not None:
        budget = nc / NODE_RATIO_TARGET
        left = budget - floor - osys
        lines += ["", f"Of the server's CPU, the kernel's part (system time: mostly loopback TCP for the "
                      f"flow's requests) is {osys:.0f} µs per flow for ours, {nsys:.0f} µs for node. "
                      f"{NODE_RATIO_TARGET}× below node would be {budget:.0f} µs a flow: after the "
                      f"signatures and ours' kernel time, {left:.0f} µs would be left for all of the "
                      f"flow's user-space work besides crypto (HTTP parsing, routing, client "
                      f"authentication, the store, JSON, token minting), against "
                      f"{max(oc - floor - osys, 0):.0f} µs spent now."]
    return lines


def section_load(out, results):
    out += ["", "## Load (`ciba-load`: poll-mode flows over keep-alive connections)", ""]
    loads = loads_of(results)
    if not loads:
        out.append("Not run.")
        return
    out += [
        "| run | workers | seconds | flows | flows/s | errors | server CPU per flow (µs) | server peak RSS (MiB) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, d in loads.items():
        rss = d.get("server_peak_rss_kb")
        cpu = d.get("server_cpu_us_per_flow")
        out.append(
            f"| {name} | {d['concurrency']} | {d['seconds']:.1f} | {d['flows']} | "
            f"{d['flows_per_second']:.1f} | {d['error_count']} | "
            f"{f'{cpu:.0f}' if cpu else 'n/a'} | {f'{rss / 1024:.1f}' if rss else 'n/a'} |"
        )
    for name, how in [("memory", "server and driver sharing the cores"),
                      ("memory-pinned", "server on one core, driver on the other")]:
        d = loads.get(name)
        if d:
            ok = d["flows_per_second"] >= FLOWS_TARGET
            out += ["", f"Whole flows on the in-memory store, {how}: {d['flows_per_second']:.0f}/s, "
                        f"target ≥ {FLOWS_TARGET}: {verdict(ok)}."]
    out += ["", "Latency per endpoint, as the driver saw it (µs):", ""]
    out += ["| run | endpoint | requests | p50 | p99 | max |", "|---|---|---:|---:|---:|---:|"]
    for name, d in loads.items():
        for endpoint, e in d["endpoints"].items():
            out.append(f"| {name} | {endpoint} | {e['count']} | {e['p50_us']} | {e['p99_us']} | {e['max_us']} |")
    errors = [(name, e, n) for name, d in loads.items() for e, n in d["errors"].items()]
    if errors:
        out += ["", "| run | error or retry | count |", "|---|---|---:|"]
        out += [f"| {name} | {e} | {n} |" for name, e, n in errors]

    out += ["", "### Side by side with node-oidc-provider", ""]
    rows = []
    for ours_name, node_name, what in [
        ("memory", "node", "whole flow, shared cores"),
        ("memory-pinned", "node-pinned", "whole flow, server on core 0, driver on core 1"),
        ("memory-pending", "node-pending", "authorize + pending poll, shared cores"),
        ("memory-pending-pinned", "node-pending-pinned", "authorize + pending poll, pinned"),
    ]:
        if ours_name not in loads or node_name not in loads:
            continue
        ours, node = loads[ours_name], loads[node_name]
        ratio = ours["flows_per_second"] / node["flows_per_second"] if node["flows_per_second"] else 0
        oc, nc = ours.get("server_cpu_us_per_flow"), node.get("server_cpu_us_per_flow")
        cpu_ratio = f"{nc / oc:.1f}×" if oc and nc else "n/a"
        rows.append(
            f"| {what} | {ours['flows_per_second']:.0f} | {node['flows_per_second']:.0f} | "
            f"**{ratio:.1f}×** | {f'{oc:.0f}' if oc else 'n/a'} | {f'{nc:.0f}' if nc else 'n/a'} | {cpu_ratio} |"
        )
    if rows:
        out += [
            "| shape | ours flows/s | node flows/s | throughput ratio (target ≥ 10×) | ours CPU µs/flow | node CPU µs/flow | CPU ratio |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ] + rows
        out += ["", "| endpoint (ours vs node, whole flow) | ours p50 (µs) | node p50 (µs) | node/ours |",
                "|---|---:|---:|---:|"]
        for ours_name, node_name in [("memory", "node"), ("memory-pinned", "node-pinned")]:
            if ours_name not in loads or node_name not in loads:
                continue
            for a, b in [("bc-authorize", "backchannel"), ("device/decision", "_approve"), ("token", "token")]:
                ea, eb = loads[ours_name]["endpoints"].get(a), loads[node_name]["endpoints"].get(b)
                if ea and eb and ea["p50_us"]:
                    out.append(f"| {a} vs {b} ({ours_name}) | {ea['p50_us']} | {eb['p50_us']} | "
                               f"{eb['p50_us'] / ea['p50_us']:.2f}× |")
    pinned, node_pinned = loads.get("memory-pinned"), loads.get("node-pinned")
    if pinned and node_pinned and pinned.get("server_cpu_us_per_flow") and node_pinned.get("server_cpu_us_per_flow"):
        oc, nc = pinned["server_cpu_us_per_flow"], node_pinned["server_cpu_us_per_flow"]
        out += ["", f"Server CPU per whole flow, pinned: ours {oc:.0f} µs, node-oidc-provider {nc:.0f} µs "
                    f"({nc / oc:.1f}×; target ≥ {NODE_RATIO_TARGET}×: {verdict(nc / oc >= NODE_RATIO_TARGET)})."]
        out += ["", *crypto_floor(results, oc, nc, pinned, node_pinned)]
    million = loads.get("memory-million-pinned")
    if million and million.get("server_peak_rss_kb"):
        peak = million["server_peak_rss_kb"] / 1024
        end = (million.get("server_rss_kb") or 0) / 1024
        out += ["", f"Memory: {million['flows']:,} authorize + pending-poll flows against the in-memory "
                    f"store with 2-second lifetimes (expired entries leave it): server peak RSS "
                    f"{peak:.1f} MiB, {end:.1f} MiB at the end; target < {RSS_TARGET_MIB} MiB after a "
                    f"million flows: {verdict(peak < RSS_TARGET_MIB and million['flows'] >= 1_000_000)}."]
    if rows and os.environ.get("BENCH_CHARTS") == "1":
        out += ["", "![Server CPU per flow and p50 per endpoint, ours against node-oidc-provider](chart-cpu.svg)",
                "", "(Per endpoint the chart shows latency: CPU is read per process, so per flow only.)"]
    out += [
        "",
        "Flow shape. ours: `POST /bc-authorize` (demo-rp, client_secret_basic, login_hint alice, a",
        "unique binding_message) → `GET /_local/pushes?user=alice&binding_message=…` (the local",
        "API's record of pushes, standing in for the phone receiving its SNS push) →",
        "`POST /device/decision`",
        "(ES256 JWT of alice-phone) → `POST /token` (the first poll redeems). node:",
        "`POST /backchannel` → `POST /_approve` (the same ES256 device JWT, verified with `jose`,",
        "then `provider.backchannelResult`) → `POST /token`. node-oidc-provider issues no refresh",
        "token without `offline_access`; ours issues access, refresh and ID token. Both sign ES256",
        "ID tokens. The pending shape is `POST /bc-authorize` (or `/backchannel`) and one",
        "`POST /token` answering `authorization_pending`. Server CPU per flow is the server",
        "process's user + system time over the run (from `/proc/PID/stat`, 10 ms ticks) divided",
        "by the flows: it does not depend on how much CPU the driver took. In the pinned runs the",
        "server has core 0 to itself and the driver core 1 (`taskset`); node-oidc-provider runs",
        "its JavaScript on one thread, ours on a tokio runtime with one worker per core.",
    ]


def section_lambda(out, results):
    out += ["", "## Lambda binaries (arm64: the release `sam build`; x86_64: `cargo lambda build --release`)", ""]
    sizes = {}
    for path in sorted(glob.glob(os.path.join(results, "lambda-sizes-*.json"))):
        for s in load(path) or []:
            sizes.setdefault(s["function"], {})[s["arch"]] = s
    if sizes:
        # The verdict is on arm64, the architecture template.yaml deploys; x86_64 is shown for
        # the cold starts below, which run on this machine's x86_64 build.
        archs = sorted({a for v in sizes.values() for a in v})
        deployed = "arm64" if "arm64" in archs else archs[0]
        out += ["| function | " + " | ".join(f"{a} stripped (MB) | {a} zipped (MB)" for a in archs)
                + f" | {deployed} under 6 MB |", "|---|" + "---:|---:|" * len(archs) + "---|"]
        for fn, by_arch in sorted(sizes.items()):
            cells = []
            for a in archs:
                s = by_arch.get(a)
                cells.append(f"{mb(s['stripped_bytes'])} | {mb(s['zipped_bytes'])}" if s else "n/a | n/a")
            size = (by_arch.get(deployed) or {}).get("stripped_bytes")
            out.append(f"| {fn} | " + " | ".join(cells) + " | "
                       + (verdict(size < SIZE_TARGET_BYTES) if size else "n/a") + " |")
        out += ["", "MB = 10⁶ bytes. Zipped: the bootstrap alone, deflated, as in the deployment package."]
    else:
        out.append("Not built.")

    out += ["", "## Lambda cold start (the official Lambda Runtime Interface Emulator, x86_64 release builds, `tests/rie.py cold-start`)", ""]
    inits = load(os.path.join(results, "lambda-init.json"))
    if not inits:
        out.append("Not run.")
        return
    out += ["| function | init (ms) | first answer (ms) | status | warm invoke (ms) | peak RSS (MiB) | init under 40 ms |",
            "|---|---:|---:|---|---:|---:|---|"]
    for fn, d in inits.items():
        if "error" in d:
            out.append(f"| {fn} | error: {d['error']} | | | | | |")
            continue
        rss = f"{d['rss_kib'] / 1024:.1f}" if d.get("rss_kib") else "n/a"
        out.append(f"| {fn} | {d['init_ms']:.1f} | {d['first_ms']:.1f} | {d['status']} | "
                   f"{d['warm_ms']:.2f} | {rss} | {verdict(d['init_ms'] < INIT_TARGET_MS)} |")
    out += [
        "",
        "Medians. *init*: the emulator's `INIT REPORT` (process start to the runtime's first",
        "`GET /runtime/invocation/next`, Lambda's Init Duration: configuration, AWS SDK set-up,",
        "the KMS public key for the signing functions); *first answer*: the first invocation as",
        "the caller sees it, init included; *warm invoke*: the emulator's `REPORT` Duration of the",
        "same event again. Each function gets the environment template.yaml gives it; DynamoDB",
        "Local and moto (SNS, KMS) on loopback stand in for AWS. The event files are the",
        "`sam local invoke` fixtures, so `token`, `userinfo`, `device-decision` and",
        "`device-register` answer their documented 4xx for unknown ids. Native x86_64 builds:",
        "the arm64 artifacts run only under qemu here, whose times are not cold starts. Lambda's",
        "own sandbox start is not in these numbers.",
    ]


def main():
    results, report = sys.argv[1], sys.argv[2]
    m = machine()
    out = [
        "# Benchmark report",
        "",
        f"Written by `bash bench/report.sh` on {m['date']}.",
        "",
        "| machine | |",
        "|---|---|",
        f"| CPU | {m['cpu']} |",
        f"| nproc | {m['nproc']} |",
        f"| memory | {m['memory']} |",
        f"| kernel | {m['kernel']} |",
        f"| rustc | {m['rustc']} |",
        f"| node | {m['node']} |",
        "",
        "Compare runs on the same machine only. Targets are goals, reported next to the figures.",
    ]
    section_criterion(out)
    section_startup(out, results)
    section_load(out, results)
    section_lambda(out, results)
    charts = {"cpu": cpu_chart(results)}
    readme_cost = section_costs(out, results, charts)
    out.append("")
    with open(report, "w") as f:
        f.write("\n".join(out))
    with open(os.path.join(results, "charts.json"), "w") as f:
        json.dump(charts, f, indent=1)
    if len(sys.argv) > 3 and readme_cost:
        replace_between(sys.argv[3], "<!-- cost:begin -->", "<!-- cost:end -->", readme_cost)


def replace_between(path, begin, end, lines):
    """Replaces what lies between the markers `begin` and `end` in the file at `path`."""
    with open(path) as f:
        text = f.read()
    head, found, rest = text.partition(begin)
    _, found_end, tail = rest.partition(end)
    if not found or not found_end:
        print(f"render.py: {path} has no {begin} … {end}: left as it is", file=sys.stderr)
        return
    with open(path, "w") as f:
        f.write(head + begin + "\n" + "\n".join(lines) + "\n" + end + tail)


def cpu_chart(results):
    """Server CPU per flow (whole and pending shapes) and p50 per endpoint, ours and node's."""
    loads = loads_of(results)
    pairs = [("whole flow", "memory", "node"), ("whole flow, pinned", "memory-pinned", "node-pinned"),
             ("authorize + pending poll", "memory-pending", "node-pending"),
             ("authorize + pending poll, pinned", "memory-pending-pinned", "node-pending-pinned")]
    flows = [{"shape": what, "ours_us": loads[o].get("server_cpu_us_per_flow"),
              "node_us": loads[n].get("server_cpu_us_per_flow")}
             for what, o, n in pairs if o in loads and n in loads]
    endpoints = []
    if "memory" in loads and "node" in loads:
        for a, b in [("bc-authorize", "backchannel"), ("device/decision", "_approve"), ("token", "token")]:
            ea, eb = loads["memory"]["endpoints"].get(a), loads["node"]["endpoints"].get(b)
            if ea and eb:
                endpoints.append({"endpoint": a, "ours_p50_us": ea["p50_us"], "node_p50_us": eb["p50_us"]})
    return {"flows": flows, "endpoints": endpoints}


if __name__ == "__main__":
    main()
