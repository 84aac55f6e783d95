"""The counted AWS calls of bench/report.sh, priced: REPORT.md's cost, deployed-latency and
scale sections, the README's cost section and the numbers of the cost and latency charts.

The counted runs (count-SIGNER-SHAPE.json, written by ciba-load --count-url) hold, per endpoint,
the AWS calls and capacity units of its requests, those made after its answer (the local
notifier's, which the notifier and deliverer Lambdas make in AWS), the sequential AWS round
trips before the answer and the in-region latency the proxy injected on them.
"""
import json
import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIGNERS = ["kms", "envelope"]
FLOWS = ["poll", "ping", "push", "refresh"]
RATES = [100, 1_000, 10_000]

# Lambda behind each endpoint ciba-load calls.
FUNCTION_OF = {"bc-authorize": "bc-authorize", "device/decision": "device-decision",
               "token": "token", "token/refresh": "token"}
KMS_ASYMMETRIC = {"Sign", "GetPublicKey"}
KMS_SYMMETRIC = {"Decrypt", "Encrypt", "GenerateDataKey"}
SQS_OPS = {"SendMessage", "SendMessageBatch", "ReceiveMessage", "DeleteMessage", "DeleteMessageBatch",
           "ChangeMessageVisibility"}

# What a flow is made of: (part, counted shape, endpoint, times per flow, the calls after the
# answer are: "drop" (not made in AWS) or "deliverer" (the deliverer Lambda's)).
PARTS = {
    "poll": [("bc-authorize", "full", "bc-authorize", 1, None),
             ("token, pending poll", "pending", "token", 2, None),
             ("device/decision", "full", "device/decision", 1, "drop"),
             ("token, redeeming poll", "full", "token", 1, None)],
    "ping": [("bc-authorize", "ping", "bc-authorize", 1, None),
             ("device/decision", "ping", "device/decision", 1, "deliverer"),
             ("token, redeeming poll", "ping", "token", 1, None)],
    "push": [("bc-authorize", "push", "bc-authorize", 1, None),
             ("device/decision", "push", "device/decision", 1, "deliverer")],
    "refresh": [("token, refresh", "refresh", "token/refresh", 1, None)],
}
FLOW_TITLE = {"poll": "poll (bc-authorize, 2 pending polls, decision, redeeming poll)",
              "ping": "ping (bc-authorize, decision, ping, redeeming poll)",
              "push": "push (bc-authorize, decision, tokens pushed)",
              "refresh": "one refresh"}
# In ping and push mode the table's stream invokes the notifier, which queues one SQS message
# the deliverer's event source mapping receives and deletes: AWS machinery the local API runs
# in process, added here. One request each per notification is the upper bound: at load the
# notifier sends batches of up to 10 and the mapping receives and deletes up to 10 at once.
ADDED = {"SendMessageBatch": 1, "ReceiveMessage": 1, "DeleteMessageBatch": 1}
# Lambda durations when the RIE run was skipped and for functions the counted runs do not time.
FLOOR_MS = 1.0
NOTIFY_FLOOR_MS = 10.0
KMS_ECC_QUOTA = 300
LAMBDA_CONCURRENCY = 1_000
HTTP_API_RPS = 10_000
PARTITION_WCU, PARTITION_RCU = 1_000, 3_000
SNS_PUBLISH_TPS = 30_000


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def prices():
    table = load(os.path.join(ROOT, "bench/prices.json"))
    return table, {k: v["usd"] / v["per"] for k, v in table["items"].items()}


def lambda_memory_gb():
    """The Globals' MemorySize of template.yaml, in GB (MB / 1024, as Lambda bills)."""
    with open(os.path.join(ROOT, "template.yaml")) as f:
        found = re.search(r"^\s+MemorySize:\s*(\d+)", f.read(), re.M)
    return int(found.group(1)) / 1024 if found else 0.125


def due_key():
    """The expiry index's key as shared/src/store/dynamodb/layout.rs builds it, and its shard
    count (1 when it is not sharded)."""
    with open(os.path.join(ROOT, "shared/src/store/dynamodb/layout.rs")) as f:
        text = f.read()
    pattern = re.search(r'format!\("(DUE#[^"]*)"', text)
    shards = re.search(r"const\s+\w*SHARD\w*\s*:\s*\w+\s*=\s*([\d_]+)", text)
    return (pattern.group(1) if pattern else "DUE#{minute}",
            int(shards.group(1).replace("_", "")) if shards else 1)


def part_numbers(d, endpoint, times, after):
    """Per flow: calls by operation, RRU, WRU, item writes by key kind; and per request: rounds,
    injected ms on the path, p50 and p99 in ms; the deliverer's share apart."""
    flows = d["flows"] or 1
    a = d.get("aws", {}).get(endpoint, {})
    requests = a.get("requests") or d["endpoints"].get(endpoint, {}).get("count") or 1
    calls = {op: n / flows * times for op, n in (a.get("calls") or {}).items()}
    after_calls = {op: n / flows * times for op, n in (a.get("calls_after_answer") or {}).items()}
    ar, aw = a.get("units_after_answer") or (0.0, 0.0)
    rru, wru = a.get("read_units", 0) / flows * times, a.get("write_units", 0) / flows * times
    on_path = {op: n - after_calls.get(op, 0) for op, n in calls.items() if n - after_calls.get(op, 0) > 1e-9}
    e = d["endpoints"].get(endpoint, {})
    row = {
        "requests": requests / flows * times,
        "calls": on_path, "rru": rru - ar / flows * times, "wru": wru - aw / flows * times,
        "item_writes": {k: n / flows * times for k, n in (a.get("item_writes") or {}).items()},
        "rounds": (a.get("rounds") or 0) / requests,
        "delay_ms": (a.get("delay_ms_on_path") or 0) / requests,
        "p50_ms": e.get("p50_us", 0) / 1000, "p99_ms": e.get("p99_us", 0) / 1000,
        "samples": e.get("count", 0),
    }
    deliverer = None
    if after == "deliverer" and after_calls:
        deliverer = {"calls": after_calls, "rru": ar / flows * times, "wru": aw / flows * times}
    return row, deliverer


def flow_numbers(results, signer, flow):
    """The parts of one flow in one signer mode, or None when a counted run is missing."""
    parts = []
    for label, shape, endpoint, times, after in PARTS[flow]:
        d = load(os.path.join(results, f"count-{signer}-{shape}.json"))
        if not d or not d.get("flows"):
            return None
        row, deliverer = part_numbers(d, endpoint, times, after)
        parts.append(dict(row, label=label, function=FUNCTION_OF[endpoint]))
        if deliverer:
            parts.append(dict(deliverer, label="deliverer (after the decision's answer)", function="deliverer",
                              requests=0, item_writes={}, async_=True))
    if flow in ("ping", "push"):
        parts.append({"label": "notifier → SQS → deliverer (added: in process locally)", "function": None,
                      "calls": dict(ADDED), "rru": 0.0, "wru": 0.0, "requests": 0, "item_writes": {},
                      "added": True})
    notification = None
    if flow in ("ping", "push"):
        d = load(os.path.join(results, f"count-{signer}-{flow}.json"))
        notification = (d or {}).get("endpoints", {}).get("notification")
    return {"parts": parts, "notification": notification}


def duration_ms(function, inits, delay_ms):
    """Billed ms of one invocation: the RIE's warm duration when measured, never less than the
    injected in-region latency on the request's path plus a millisecond."""
    warm = ((inits or {}).get(function) or {}).get("warm_ms")
    if function in ("notifier", "deliverer"):
        return warm or NOTIFY_FLOOR_MS
    return max(warm or 0.0, delay_ms + FLOOR_MS)


def flow_cost(numbers, price, inits, gb):
    """USD per flow by AWS service, and the totals it was worked from."""
    calls, rru, wru, invocations, gb_s, http = {}, 0.0, 0.0, 0.0, 0.0, 0.0
    for p in numbers["parts"]:
        for op, n in p["calls"].items():
            calls[op] = calls.get(op, 0) + n
        rru += p["rru"]
        wru += p["wru"]
        if p.get("function") and not p.get("async_"):
            http += p["requests"]
            invocations += p["requests"]
            gb_s += p["requests"] * duration_ms(p["function"], inits, p.get("delay_ms", 0)) / 1000 * gb
        if p.get("added"):
            for fn in ("notifier", "deliverer"):
                invocations += 1
                gb_s += duration_ms(fn, inits, 0) / 1000 * gb
    publishes = calls.get("Publish", 0)
    asym = sum(n for op, n in calls.items() if op in KMS_ASYMMETRIC)
    sym = sum(n for op, n in calls.items() if op in KMS_SYMMETRIC)
    sqs = sum(n for op, n in calls.items() if op in SQS_OPS)
    cost = {
        "DynamoDB writes": wru * price["dynamodb_wru"],
        "DynamoDB reads": rru * price["dynamodb_rru"],
        "KMS": asym * price["kms_asymmetric_ecc_request"] + sym * price["kms_symmetric_request"],
        "SNS": publishes * (price["sns_publish"] + price["sns_mobile_push"]),
        "SQS": sqs * price["sqs_request"],
        "Lambda requests": invocations * price["lambda_request"],
        "Lambda duration": gb_s * price["lambda_gb_s_arm64"],
        "API Gateway": http * price["http_api_request"],
    }
    totals = {"rru": rru, "wru": wru, "publishes": publishes, "kms_asym": asym, "kms_sym": sym,
              "sqs": sqs, "invocations": invocations, "http": http, "gb_s": gb_s}
    return cost, totals


def fmt_calls(calls):
    return ", ".join(f"{op} {n:g}" for op, n in sorted(calls.items()) if n) or "none"


def num(x):
    return f"{x:.3g}" if abs(x) < 10 else f"{x:,.0f}"


def section_costs(out, results, charts):
    """Appends the counted sections to `out`; returns the README's cost section (lines), or None
    when nothing was counted."""
    table, price = prices()
    inits = load(os.path.join(results, "lambda-init.json"))
    settings = load(os.path.join(results, "count-settings.json")) or {}
    gb = lambda_memory_gb()
    numbers = {(s, f): flow_numbers(results, s, f) for s in SIGNERS for f in FLOWS}
    out += ["", "## AWS calls per authentication, counted", ""]
    if not any(numbers.values()):
        out.append("Not run.")
        return None
    out += [
        "ciba-local on DynamoDB Local and moto (SNS, KMS) through `bench/count_proxy.py` (one process",
        "for the three services, so calls are on one clock), in both signer modes: `kms`",
        "(`KMS_KEY_ID`: a KMS `Sign` per signed token) and `envelope` (`SIGNING_KEY_ENVELOPE`, a key",
        "made by `ciba-admin signing-key`: one KMS `Decrypt` per cold start). `ciba-load --concurrency 1",
        "--count-url` runs each shape one flow at a time and puts every call, and the capacity units",
        "DynamoDB Local reports (doubled for transactions, as billed), down to the request that",
        "caused it; calls made after the answer are the local notifier's. The poll flow is",
        "composed from the `full` shape (bc-authorize, decision, redeeming poll) and two polls of the",
        "`pending` shape. In poll mode the local notifier's read after the decision is left out: the",
        "stream's filter keeps poll-mode requests from the notifier in AWS. In ping and push mode it",
        "is the deliverer's work (`Notifier::deliver`, the same code), and the notifier → SQS →",
        "deliverer hop the local API does in process is added explicitly: one `SendMessageBatch`",
        "(notifier), one `ReceiveMessage` and one `DeleteMessageBatch` (the deliverer's event source",
        "mapping) and one invocation of each function per notification, the upper bound (at load",
        "they are shared by batches of up to 10). The DynamoDB stream's reads by Lambda are free.",
        "`/_local/pushes` (the harness's phone) is left out.",
        "",
        "| signer | flow | part | requests | AWS calls | RRU | WRU | write units by item key |",
        "|---|---|---|---:|---|---:|---:|---|",
    ]
    for (signer, flow), n in numbers.items():
        if not n:
            continue
        for p in n["parts"]:
            items = ", ".join(f"{k} {v:g}" for k, v in sorted(p.get("item_writes", {}).items()))
            out.append(f"| {signer} | {flow} | {p['label']} | {p['requests']:g} | {fmt_calls(p['calls'])} | "
                       f"{p['rru']:g} | {p['wru']:g} | {items} |")
    for signer in SIGNERS:
        start = load(os.path.join(results, f"count-{signer}-startup.json"))
        if start:
            kms = {op: n for op, n in start.get("calls", {}).items() if op in KMS_ASYMMETRIC | KMS_SYMMETRIC}
            out.append(f"| {signer} | per cold start | the signer's KMS calls | | {fmt_calls(kms)} | | | |")

    # Cost.
    costs = {}
    for key, n in numbers.items():
        if n:
            costs[key] = flow_cost(n, price, inits, gb)
    lambda_note = ("warm durations measured under the Runtime Interface Emulator (`lambda-init.json`), "
                   f"never less than the injected in-region latency on the request's path + {FLOOR_MS:g} ms"
                   if inits else
                   f"**the Lambda cold-start run was skipped (`BENCH_SKIP` has lambda)**: each invocation "
                   f"is priced at a floor of the injected in-region latency on its path + {FLOOR_MS:g} ms, "
                   f"notifier and deliverer at {NOTIFY_FLOOR_MS:g} ms")
    out += ["", "## Cost per million authentications, by AWS service", ""]
    cols = [k for k in costs]
    out.append("| USD per million | " + " | ".join(f"{f} ({s})" for s, f in cols) + " |")
    out.append("|---|" + "---:|" * len(cols))
    services = list(next(iter(costs.values()))[0])
    for service in services:
        out.append(f"| {service} | " + " | ".join(f"{costs[k][0][service] * 1e6:.2f}" for k in cols) + " |")
    out.append("| **total** | " + " | ".join(f"**{sum(costs[k][0].values()) * 1e6:.2f}**" for k in cols) + " |")
    out.append("| WRU / RRU per flow | " + " | ".join(
        f"{costs[k][1]['wru']:g} / {costs[k][1]['rru']:g}" for k in cols) + " |")
    out += [
        "",
        f"Prices: `bench/prices.json` ({table['region']}, checked {table['checked']}; each item names its",
        "source, and the KMS asymmetric figure is partly from memory, as the file says). KMS: "
        f"${table['items']['kms_asymmetric_ecc_request']['usd']} per 10,000 asymmetric (ECC `Sign`) and "
        f"${table['items']['kms_symmetric_request']['usd']} per 10,000 symmetric requests; SNS: a publish plus a mobile",
        f"push delivery per publish. Lambda: arm64 at {gb * 1024:.0f} MB (template.yaml's MemorySize), {lambda_note}.",
        "The clients' access tokens are opaque (the default); a client registered with",
        "`access_token_format` jwt adds a `Sign` per access token in kms mode.",
        "Not per authentication: each KMS key is $1 a month (one asymmetric key in kms mode, one",
        "symmetric key in envelope mode); the envelope mode's `Decrypt` is one per cold start, the kms",
        "mode's `GetPublicKey` one per key per cold start; the deliverer's event source mapping long-polls",
        "SQS while the queue is empty (a few requests a minute per poller).",
    ]
    if os.environ.get("BENCH_CHARTS") == "1":
        out += ["", "![Cost per million authentications by AWS service](chart-cost.svg)"]
    charts["cost"] = [{"signer": s, "flow": f, "usd_per_million": {k: v * 1e6 for k, v in costs[(s, f)][0].items()}}
                      for s, f in cols]

    section_latency(out, numbers, settings, charts)
    scale_lines = section_scale(out, numbers, costs, inits, gb)
    return readme_cost(costs, numbers, table, gb, lambda_note, scale_lines)


def section_latency(out, numbers, settings, charts):
    out += ["", "## Deployed latency, in-region latency injected", ""]
    out += [
        f"The counted runs above, through the proxy holding every call for its in-region latency "
        f"({settings.get('delay_ms', 'n/a')} ms per call). Sequential round trips: calls overlapping in time",
        "count once (the proxy serves all three services on one clock). *injected on path*: the",
        "latency the proxy added along those rounds, what a deployment pays in AWS calls; the measured",
        "p50/p99 add the emulators' own time on loopback and our code's (a DynamoDB Local call takes a",
        "few ms), so the deployed figure lies between the two, plus API Gateway and Lambda overhead.",
        "*notification*: from the decision's answer to the client's notification endpoint receiving it.",
        "",
        "| signer | flow | endpoint | sequential AWS round trips | injected on path (ms) | p50 (ms) | p99 (ms) | samples |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    rows = []
    for (signer, flow), n in numbers.items():
        if not n:
            continue
        for p in n["parts"]:
            if p.get("function") and not p.get("async_"):
                out.append(f"| {signer} | {flow} | {p['label']} | {p['rounds']:.1f} | {p['delay_ms']:.0f} | "
                           f"{p['p50_ms']:.1f} | {p['p99_ms']:.1f} | {p['samples']} |")
                rows.append({"signer": signer, "flow": flow, "endpoint": p["label"], "rounds": p["rounds"],
                             "injected_ms": p["delay_ms"], "p50_ms": p["p50_ms"], "p99_ms": p["p99_ms"]})
        if n["notification"]:
            e = n["notification"]
            out.append(f"| {signer} | {flow} | notification | | | {e['p50_us'] / 1000:.1f} | "
                       f"{e['p99_us'] / 1000:.1f} | {e['count']} |")
    out += ["", "With few samples per shape (`BENCH_COUNT_FLOWS`), p99 is close to the slowest one."]
    if os.environ.get("BENCH_CHARTS") == "1":
        out += ["", "![p50 and p99 per endpoint, in-region latency injected](chart-latency.svg)"]
    charts["latency"] = rows


def section_scale(out, numbers, costs, inits, gb):
    """The scale table; returns its lines for the README too."""
    pattern, shards = due_key()
    lines = ["| new authentications per second | " + " | ".join(f"{r:,}" for r in RATES) + " | limit |",
             "|---|" + "---:|" * len(RATES) + "---|"]
    poll_kms, poll_env = numbers.get(("kms", "poll")), numbers.get(("envelope", "poll"))
    push_kms = numbers.get(("kms", "push")) or poll_kms
    if not poll_kms:
        return []
    t_kms = costs[("kms", "poll")][1]
    sign_per_flow = t_kms["kms_asym"]
    sign_push = costs.get(("kms", "push"), costs[("kms", "poll")])[1]["kms_asym"]

    binds = []

    def row(name, per_second, limit, limit_text, action=None):
        if limit and per_second(1) > 0:
            binds.append((limit / per_second(1), name, action))
        cells = []
        for r in RATES:
            v = per_second(r)
            mark = " ❌" if limit and v > limit else ""
            cells.append(f"{num(v)}{mark}")
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {limit_text} |")

    row("KMS `Sign`/s, kms mode (poll flow)", lambda r: r * sign_per_flow, KMS_ECC_QUOTA,
        f"{KMS_ECC_QUOTA}/s ECC quota per account and region (adjustable)",
        "switch to envelope mode (`SigningMode=envelope`), or ask for a higher KMS quota")
    row("KMS `Sign`/s, kms mode (push flow)", lambda r: r * sign_push, KMS_ECC_QUOTA, "the same quota")
    row("KMS `Sign`/s, envelope mode", lambda r: 0.0, None, "none: a `Decrypt` per cold start")
    row("DynamoDB WCU/s, whole table (poll)", lambda r: r * t_kms["wru"], None,
        "on demand: spread over partitions by key")
    row("DynamoDB RCU/s, whole table (poll)", lambda r: r * t_kms["rru"], None, "the same")
    # Write units on the expiry index per flow, as counted (a transaction's doubled).
    due_writes = sum(p.get("item_writes", {}).get("DUE", 0) for p in push_kms["parts"])
    row(f"WCU/s on one `{pattern}` partition (ping/push only)",
        lambda r: r * due_writes / shards, PARTITION_WCU, f"{PARTITION_WCU:,} WCU per partition",
        "more expiry-index shards (ping and push only)")
    row("SNS publishes/s", lambda r: r * t_kms["publishes"], SNS_PUBLISH_TPS,
        f"{SNS_PUBLISH_TPS:,}/s Publish in us-east-1 (from memory; soft)",
        "ask for a higher SNS Publish quota")
    row("API Gateway requests/s (poll)", lambda r: r * t_kms["http"], HTTP_API_RPS,
        f"{HTTP_API_RPS:,} rps account throttle per region (soft)",
        "ask for a higher API Gateway throttle quota")

    def concurrency(r, n):
        total = 0.0
        for p in n["parts"]:
            if p.get("function") and not p.get("async_"):
                total += r * p["requests"] * duration_ms(p["function"], inits, p.get("delay_ms", 0)) / 1000
        return total

    row("Lambda concurrency, kms mode (poll)", lambda r: concurrency(r, poll_kms), LAMBDA_CONCURRENCY,
        f"{LAMBDA_CONCURRENCY:,} per account and region (soft)",
        "ask for a higher Lambda concurrency quota")
    if poll_env:
        row("Lambda concurrency, envelope mode (poll)", lambda r: concurrency(r, poll_env), LAMBDA_CONCURRENCY,
            "the same", "ask for a higher Lambda concurrency quota")
    sharded = (f"sharded: `{pattern}` spreads a minute's ping and push requests over {shards} partitions"
               if shards > 1 else
               f"not sharded: `{pattern}` puts every ping and push request of a minute in one partition")
    lines += [
        "",
        f"❌: over the limit. Per flow: {sign_per_flow:g} `Sign` (kms mode, poll), {t_kms['wru']:g} WRU, "
        f"{t_kms['rru']:g} RRU, {t_kms['http']:g} HTTP API requests (kms mode, poll).",
        "Lambda concurrency is rate × requests × billed duration per API function (the durations of the",
        f"cost table). The expiry index takes {due_writes:g} write unit(s) per push flow (counted, a",
        "transaction's doubled) of its partition's 1,000 per second, and a minute's items share",
        f"their key for that whole minute. The expiry index is {sharded} (read from",
        "`shared/src/store/dynamodb/layout.rs`). Every other item is keyed by its own request, token",
        "or user, so on-demand DynamoDB spreads the table-wide load; one user's or client's items see",
        "only that user's or client's rate (the table-wide on-demand maximum is a soft quota too).",
        "",
        "Which binds first, at how many new authentications per second, and what the operator changes:",
        "",
    ]
    for at, name, action in sorted(binds):
        lines.append(f"1. {name}: at {at:,.0f}/s" + (f"; {action}." if action else "."))
    out += ["", "## Scale on paper", ""] + lines
    return lines


def readme_cost(costs, numbers, table, gb, lambda_note, scale_lines):
    """The README's cost section: the numbers of this run, the prose around them kept."""
    lines = [
        "",
        f"Generated by `bench/render.py` from the counted run of `bash bench/report.sh`; prices from",
        f"`bench/prices.json` ({table['region']}, checked {table['checked']}). USD per million:",
        "",
    ]
    cols = list(costs)
    lines.append("| AWS service | " + " | ".join(f"{f}, {s}" for s, f in cols) + " |")
    lines.append("|---|" + "---:|" * len(cols))
    for service in next(iter(costs.values()))[0]:
        lines.append(f"| {service} | " + " | ".join(f"{costs[k][0][service] * 1e6:.2f}" for k in cols) + " |")
    lines.append("| **total** | " + " | ".join(f"**{sum(costs[k][0].values()) * 1e6:.2f}**" for k in cols) + " |")
    lines.append("| WRU / RRU | " + " | ".join(f"{costs[k][1]['wru']:g} / {costs[k][1]['rru']:g}" for k in cols) + " |")
    lines += ["", f"Lambda: arm64 at {gb * 1024:.0f} MB, {lambda_note}.", "",
              "Scale, from the same counts (see `bench/REPORT.md`):", ""] + scale_lines + [""]
    return lines
