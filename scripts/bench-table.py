#!/usr/bin/env python3
"""Turns the raw reports of scripts/bench-compare.sh into the tables of
BENCHMARKS.md (between the bench-compare markers). Medians over the runs;
every run's value is listed too, so the spread is visible. One table per
mix (mixed: `<who>-ramp-N.json` ...; relay: `<who>-relay-ramp-N.json` ...),
each followed by ours' Redis commands per message (`INFO commandstats`).

    python3 scripts/bench-table.py artifacts/bench/<time> BENCHMARKS.md
"""
import glob
import json
import os
import re
import statistics
import sys

out_dir, md_path = sys.argv[1], sys.argv[2]


def load(pattern):
    return [json.load(open(p)) for p in sorted(glob.glob(os.path.join(out_dir, pattern)))]


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def fmt(x, nd=0):
    if x is None:
        return "n/a"
    return f"{x:,.{nd}f}"


def ratio(a, b, nd=2):
    if a is None or b in (None, 0):
        return "n/a"
    return f"{a / b:.{nd}f}x"


def runs(xs, nd=0):
    return ", ".join(fmt(x, nd) for x in xs)


def cpu_per_1k(r, names=None):
    procs = r["processes"]
    return sum(v["cpu_seconds_per_1k_msgs"] for k, v in procs.items() if names is None or any(k.startswith(n) for n in names))


def xadd_rate(name):
    try:
        txt = open(os.path.join(out_dir, name)).read()
        m = re.search(r"([\d.]+) requests per second", txt)
        return float(m.group(1)) if m else None
    except OSError:
        return None


core_ramp, core_5k = load("core-ramp-*.json"), load("core-5k-*.json")
idle = {t: (load(f"{t}-idle.json") or [None])[0] for t in ("ours", "peer")}
echo = (load("echo.json") or [None])[0]
chat = (load("chatlist.json") or [None])[0]

o_mem = idle["ours"]["rss_per_conn_kib"] if idle["ours"] else None
p_mem = idle["peer"]["rss_per_conn_kib"] if idle["peer"] else None
# With a ramp (--step): memory per socket at the largest count both held
# without a refusal, and how many sockets each node held in all.
idle_at = None
if idle["ours"] and idle["peer"] and len(idle["ours"].get("steps", [])) > 1 and len(idle["peer"].get("steps", [])) > 1:
    clean = lambda r: {s["held"]: s for s in r["steps"] if s["failed"] == 0}
    common = sorted(set(clean(idle["ours"])) & set(clean(idle["peer"])))
    if common:
        idle_at = common[-1]
        o_mem = clean(idle["ours"])[idle_at]["rss_per_conn_kib"]
        p_mem = clean(idle["peer"])[idle_at]["rss_per_conn_kib"]
xadd, xadd_p = xadd_rate("xadd.txt"), xadd_rate("xadd-p16.txt")
bad = lambda rs: sum(r["deliveries"]["lost"] + r["deliveries"]["duplicated"] + r["deliveries"]["out_of_order"] for r in rs)


def groups(rs, names):
    """Median CPU s per 1,000 messages of each process group over the runs, "a / b / c"."""
    return " / ".join(fmt(med([cpu_per_1k(r, [n]) for r in rs]), 3) for n in names)


def mix_rows(tag, L, with_idle):
    """The side-by-side rows of one mix (tag "" for mixed, "relay-")."""
    ours_ramp, peer_ramp = load(f"ours-{tag}ramp-*.json"), load(f"peer-{tag}ramp-*.json")
    ours_fix, peer_fix = load(f"ours-{tag}fixed-*.json"), load(f"peer-{tag}fixed-*.json")
    ours_high, peer_high = load(f"ours-{tag}high-*.json"), load(f"peer-{tag}high-*.json")
    o_max = [r["max_sustained_msgs_per_s"] for r in ours_ramp]
    p_max = [r["max_sustained_msgs_per_s"] for r in peer_ramp]
    o_p99 = [r["latency"]["p99_ms"] for r in ours_fix]
    p_p99 = [r["latency"]["p99_ms"] for r in peer_fix]
    o_p50 = [r["latency"]["p50_ms"] for r in ours_fix]
    p_p50 = [r["latency"]["p50_ms"] for r in peer_fix]
    o_cpu = [cpu_per_1k(r) for r in ours_fix]
    p_cpu = [cpu_per_1k(r) for r in peer_fix]
    o_cpu_srv = [cpu_per_1k(r, ["gateway"]) for r in ours_fix]
    p_cpu_srv = [cpu_per_1k(r, ["peer"]) for r in peer_fix]
    o_lost, p_lost = bad(ours_fix), bad(peer_fix)
    rate = ours_fix[0]["offered_msgs_per_s"] if ours_fix else None
    L.append("| figure | ours (2 gateways + worker) | Socket.IO peer (2 nodes) | ours/theirs |")
    L.append("| --- | --- | --- | --- |")
    L.append(f"| max sustained msg/s (zero loss, p99 < 250 ms) | {fmt(med(o_max))} [{runs(o_max)}] | {fmt(med(p_max))} [{runs(p_max)}] | {ratio(med(o_max), med(p_max))} |")
    L.append(f"| p99 at {fmt(rate)} msg/s (ms) | {fmt(med(o_p99), 2)} [{runs(o_p99, 2)}] | {fmt(med(p_p99), 2)} [{runs(p_p99, 2)}] | {ratio(med(o_p99), med(p_p99))} |")
    L.append(f"| p50 at {fmt(rate)} msg/s (ms) | {fmt(med(o_p50), 2)} [{runs(o_p50, 2)}] | {fmt(med(p_p50), 2)} [{runs(p_p50, 2)}] | {ratio(med(o_p50), med(p_p50))} |")
    L.append(f"| CPU s per 1,000 msgs at {fmt(rate)} msg/s, all processes (servers + worker + Redis) | {fmt(med(o_cpu), 3)} [{runs(o_cpu, 3)}] | {fmt(med(p_cpu), 3)} [{runs(p_cpu, 3)}] | {ratio(med(o_cpu), med(p_cpu))} |")
    L.append(f"| CPU s per 1,000 msgs, server nodes only | {fmt(med(o_cpu_srv), 3)} | {fmt(med(p_cpu_srv), 3)} | {ratio(med(o_cpu_srv), med(p_cpu_srv))} |")
    if ours_high and peer_high:
        # Near saturation: batches are large, so this is the cost that bounds throughput.
        hrate = ours_high[0]["offered_msgs_per_s"]
        ok = lambda rs: f"{sum(r['verdict'] == 'sustained' for r in rs)} of {len(rs)}"
        oh99, ph99 = [r["latency"]["p99_ms"] for r in ours_high], [r["latency"]["p99_ms"] for r in peer_high]
        oh50, ph50 = [r["latency"]["p50_ms"] for r in ours_high], [r["latency"]["p50_ms"] for r in peer_high]
        ohc, phc = [cpu_per_1k(r) for r in ours_high], [cpu_per_1k(r) for r in peer_high]
        L.append(f"| runs sustained at {fmt(hrate)} msg/s (15 s each) | {ok(ours_high)} | {ok(peer_high)} | |")
        L.append(f"| p99 at {fmt(hrate)} msg/s (ms) | {fmt(med(oh99), 2)} [{runs(oh99, 2)}] | {fmt(med(ph99), 2)} [{runs(ph99, 2)}] | {ratio(med(oh99), med(ph99))} |")
        if tag:
            L.append(f"| p50 at {fmt(hrate)} msg/s (ms) | {fmt(med(oh50), 2)} [{runs(oh50, 2)}] | {fmt(med(ph50), 2)} [{runs(ph50, 2)}] | {ratio(med(oh50), med(ph50))} |")
            oa99 = [r.get("latency_at_agents", {}).get("p99_ms") for r in ours_high]
            pa99 = [r.get("latency_at_agents", {}).get("p99_ms") for r in peer_high]
            L.append(f"| p99 at {fmt(hrate)} msg/s at the agents, across nodes (ms) | {fmt(med(oa99), 2)} [{runs(oa99, 2)}] | {fmt(med(pa99), 2)} [{runs(pa99, 2)}] | {ratio(med(oa99), med(pa99))} |")
        L.append(f"| CPU s per 1,000 msgs at {fmt(hrate)} msg/s, all processes (servers + worker + Redis) | {fmt(med(ohc), 3)} [{runs(ohc, 3)}] | {fmt(med(phc), 3)} [{runs(phc, 3)}] | {ratio(med(ohc), med(phc))} |")
        L.append(f"| same, per process group (medians): ours gateways / worker / Redis, peer nodes / Redis | {groups(ours_high, ['gateway', 'worker', 'redis'])} | {groups(peer_high, ['peer', 'redis'])} | |")
        L.append(f"| lost + duplicated + out-of-order at {fmt(hrate)} msg/s (all runs) | {bad(ours_high)} | {bad(peer_high)} | |")
    if with_idle and idle["ours"] and idle["peer"]:
        if idle_at:
            L.append(f"| memory per idle connection, one node (KiB RSS at {idle_at:,} sockets each) | {fmt(o_mem, 2)} | {fmt(p_mem, 2)} | {ratio(o_mem, p_mem)} |")
            why = lambda r: "refused beyond" if r["ended"] == "failed" else "all asked"
            L.append(f"| idle sockets one node held (ramp of {idle['ours']['steps'][0]['held']:,}; this machine allows 20,000 open files per process) | {idle['ours']['held']:,} ({why(idle['ours'])}) | {idle['peer']['held']:,} ({why(idle['peer'])}) | {ratio(idle['ours']['held'], idle['peer']['held'])} |")
        else:
            L.append(f"| memory per idle connection, one node (KiB RSS; {idle['ours']['held']:,} vs {idle['peer']['held']:,} sockets held) | {fmt(o_mem, 2)} | {fmt(p_mem, 2)} | {ratio(o_mem, p_mem)} |")
    L.append(f"| lost + duplicated + out-of-order at the fixed rate (all runs) | {o_lost} | {p_lost} | |")
    commands_table(L, ours_fix, ours_high)
    return ours_ramp, peer_ramp


def commands_table(L, fixed, high):
    """Ours' Redis commands per delivered message at both fixed rates
    (medians over the runs), from `redis_commands` of each report."""
    cols = [(rs[0]["offered_msgs_per_s"], rs) for rs in (fixed, high) if rs and any(r.get("redis_commands") for r in rs)]
    if not cols:
        return
    fig = lambda rs, c, f: med([r["redis_commands"].get(c, {}).get(f, 0.0) for r in rs if r.get("redis_commands")])
    names = sorted({c for _, rs in cols for r in rs for c in r.get("redis_commands", {})})
    # Leave out what is not per message (at most one call per 100 messages and under 0.01 µs per message at every rate).
    names = [c for c in names if any(fig(rs, c, "calls_per_msg") >= 0.01 or fig(rs, c, "usec_per_msg") >= 0.01 for _, rs in cols)]
    last = cols[-1][1]
    names.sort(key=lambda c: -fig(last, c, "usec_per_msg"))
    skipped = sum(1 for _, rs in cols for r in rs if not r.get("redis_commands"))
    L.append("")
    L.append("Ours, Redis commands per delivered message (`INFO commandstats` around each fixed run; medians of the runs"
             + (f"; {skipped} run(s) without figures" if skipped else "")
             + "). Commands run inside a script count under their own name too, and their time is also in the script's (`evalsha`): do not add the µs up.")
    L.append("")
    L.append("| command | " + " | ".join(f"calls / msg at {fmt(rate)} msg/s | µs / msg at {fmt(rate)} msg/s" for rate, _ in cols) + " |")
    L.append("| --- |" + " --- | --- |" * len(cols))
    for c in names:
        L.append(f"| `{c}` | " + " | ".join(f"{fmt(fig(rs, c, 'calls_per_msg'), 3)} | {fmt(fig(rs, c, 'usec_per_msg'), 2)}" for _, rs in cols) + " |")


L = []
mixed_runs = len(load("ours-ramp-*.json")) or len(load("ours-relay-ramp-*.json"))
L.append(f"Raw reports: `{out_dir}` ({mixed_runs} run(s) per figure; medians, every run in brackets).")
L.append("")
ours_ramp = peer_ramp = relay_ours = relay_peer = []
if load("ours-ramp-*.json") or load("ours-fixed-*.json"):
    m0 = load("ours-fixed-*.json")[:1] or [{}]
    if m0[0].get("mix"):
        L.append(f"Mixed mix ({m0[0]['customers']:,} customers and {m0[0]['agents']} agents watching {m0[0]['agent_watch']} each, sockets round robin over the nodes; "
                 "25% messages, 60% typing, 15% seen; agents reply):")
        L.append("")
    ours_ramp, peer_ramp = mix_rows("", L, True)
if load("ours-relay-ramp-*.json") or load("ours-relay-fixed-*.json"):
    r0 = (load("ours-relay-fixed-*.json") or load("peer-relay-fixed-*.json") or [{}])[0]
    L.append("")
    L.append(f"Relay mix (messages only, {r0.get('message_bytes') or '?'} bytes: {r0.get('customers', '?')} customers on node A each writing to its own conversation, "
             f"{r0.get('agents', '?')} agent sockets on node B each watching {r0.get('agent_watch', '?')} conversations; no typing, seen or agent replies):")
    L.append("")
    relay_ours, relay_peer = mix_rows("relay-", L, False)
L.append("")
L.append("Ceilings on this machine (context):")
L.append("")
L.append("| ceiling | figure |")
L.append("| --- | --- |")
L.append(f"| `redis-benchmark` XADD, 50 clients, no pipelining | {fmt(xadd)} XADD/s |")
L.append(f"| `redis-benchmark` XADD, 50 clients, pipeline 16 | {fmt(xadd_p)} XADD/s |")
if echo:
    L.append(f"| bare fastwebsockets echo (`ws-echo`), {echo['connections']} conns x {echo['inflight']} in flight, {echo['size']} B | {fmt(echo['round_trips_per_s'])} round trips/s |")
c_max = [r["max_sustained_msgs_per_s"] for r in core_ramp]
if c_max and xadd:
    L.append(f"| ours relayed (1 gateway) / XADD ceiling without pipelining | {med(c_max) / xadd:.2f} |")
L.append("")
L.append("Core relay (1 gateway + Redis + worker):")
L.append("")
L.append("| figure | result | target |")
L.append("| --- | --- | --- |")
c50 = [r["latency"]["p50_ms"] for r in core_5k]
c99 = [r["latency"]["p99_ms"] for r in core_5k]
c_lost = sum(r["deliveries"]["lost"] for r in core_5k)
L.append(f"| max msg/s relayed end to end (zero loss, p99 < 250 ms) | {fmt(med(c_max))} [{runs(c_max)}] | 20,000 |")
L.append(f"| p50 send-to-receive at 5,000 msg/s (ms) | {fmt(med(c50), 2)} [{runs(c50, 2)}] | |")
L.append(f"| p99 send-to-receive at 5,000 msg/s (ms) | {fmt(med(c99), 2)} [{runs(c99, 2)}] (lost: {c_lost}) | < 10 |")
if chat:
    L.append(f"| chat-list page, 50 rows of {chat['conversations']:,} (client median on loopback, ms) | {chat['client_p50_ms']:.3f} (p99 {chat['client_p99_ms']:.3f}) | < 2 |")
    L.append(f"| same, server side (`http_request_duration_seconds`) | {chat['server_share_le_1ms'] * 100:.1f}% <= 1 ms, {chat['server_share_le_2ms'] * 100:.1f}% <= 2 ms | < 2 |")



def endings(ramps):
    """How each ramp stopped: its lowest rate that was not sustained (the
    first failed step, or a lower refinement step that failed too)."""
    out = []
    for i, r in enumerate(ramps, 1):
        failed = sorted((s for s in r["steps"] if not s["sustained"]), key=lambda s: s["offered_msgs_per_s"])
        if failed:
            s = failed[0]
            why = s["verdict"]
            if "p99" not in why:
                why += f" (p99 {s['latency']['p99_ms']:.1f} ms)"
            out.append(f"run {i} at {fmt(s['offered_msgs_per_s'])} msg/s: {why}")
        else:
            out.append(f"run {i}: reached the ramp's maximum")
    return "; ".join(out)


L.append("")
L.append("How each ramp stopped (its lowest rate that was not sustained, after the refinement steps):")
L.append("")
for name, ramps in (("ours, 2 gateways", ours_ramp), ("peer, 2 nodes", peer_ramp), ("ours, 2 gateways, relay mix", relay_ours), ("peer, 2 nodes, relay mix", relay_peer), ("ours, 1 gateway (core relay)", core_ramp)):
    if ramps:
        L.append(f"- {name}: {endings(ramps)}")

table = "\n".join(L)
start, end = "<!-- bench-compare:start -->", "<!-- bench-compare:end -->"
doc = open(md_path).read() if os.path.exists(md_path) else f"# Benchmarks\n\n{start}\n{end}\n"
if start not in doc:
    doc += f"\n{start}\n{end}\n"
pre, rest = doc.split(start, 1)
_, post = rest.split(end, 1)
open(md_path, "w").write(f"{pre}{start}\n{table}\n{end}{post}")
print(table)
