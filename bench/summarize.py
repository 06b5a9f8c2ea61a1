#!/usr/bin/env python3
"""Summarises a bench/run.sh run directory into a Markdown table with ratios to nginx."""
import glob
import os
import re
import statistics
import sys

run = sys.argv[1]


def ms(v, unit):
    return float(v) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


rows = {}
for p in sorted(glob.glob(os.path.join(run, "raw", "r*-*-*.txt"))):
    rnd, scen, tgt = os.path.basename(p)[:-4].split("-", 2)
    t = open(p).read()
    rps = re.search(r"Requests/sec:\s+([\d.]+)", t)
    lat = {q: ms(v, u) for q, v, u in re.findall(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$", t, re.M)}
    cpu = re.search(r"cpu_ticks=(\d+) (?:sys_ticks=(\d+) )?clk_tck=(\d+) rss_kib=(\d+)", t)
    reqs = re.search(r"(\d+) requests in ([\d.]+)(s|m)", t)
    errs = re.search(r"Socket errors: (.*)", t)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", t)
    rows.setdefault((scen, tgt), []).append({
        "rps": float(rps.group(1)) if rps else 0.0,
        "p50": lat.get("50"), "p99": lat.get("99"),
        "cpu_s": int(cpu.group(1)) / int(cpu.group(3)) if cpu else None,
        "sys_s": int(cpu.group(2)) / int(cpu.group(3)) if cpu and cpu.group(2) else None,
        "rss_mib": int(cpu.group(4)) / 1024 if cpu else None,
        "requests": int(reqs.group(1)) if reqs else 0,
        "errors": (errs.group(1).strip() if errs else "") + (f" non-2xx {non2xx.group(1)}" if non2xx else ""),
    })


def mean(xs):
    xs = [x for x in xs if x is not None]
    return statistics.mean(xs) if xs else None


def agg(scen, tgt):
    v = rows.get((scen, tgt))
    if not v:
        return None
    cpu_per_k = mean([x["cpu_s"] / x["requests"] * 1000 * 1000 if x["cpu_s"] is not None and x["requests"] else None for x in v])
    sys_share = mean([x["sys_s"] / x["cpu_s"] if x["sys_s"] is not None and x["cpu_s"] else None for x in v])
    return {"sys": sys_share, "rps": mean([x["rps"] for x in v]), "rounds": [x["rps"] for x in v], "p50": mean([x["p50"] for x in v]),
            "p99": mean([x["p99"] for x in v]), "cpu_ms_per_1k": cpu_per_k, "rss": max(x["rss_mib"] or 0 for x in v),
            "errors": "; ".join(sorted({x["errors"] for x in v if x["errors"]}))}


def round_ratios(a, base):
    """Rampart's req/s over nginx's round by round (each pair ran back to back), and
    their median: on a noisy machine the spread says how far the mean ratio can be
    trusted."""
    if not base or len(a["rounds"]) != len(base["rounds"]):
        return "—"
    rs = [x / y for x, y in zip(a["rounds"], base["rounds"]) if y]
    if not rs:
        return "—"
    return " / ".join(f"{r:.2f}" for r in rs) + f" (median {statistics.median(rs):.2f})"


print("| scenario | proxy | req/s (rounds) | p50 ms | p99 ms | CPU ms / 1k req | kernel share | RSS MiB | req/s ÷ nginx | per round | p99 ÷ nginx | CPU ÷ nginx | errors |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
for scen in ("get", "post", "newconn"):
    for tls in ("", "_tls"):
        base = agg(scen, "nginx" + tls)
        for tgt in ("nginx" + tls, "rampart" + tls):
            a = agg(scen, tgt)
            if not a:
                continue
            f = lambda x, d=2: "n/a" if x is None else f"{x:.{d}f}"
            ratio = lambda k: f(a[k] / base[k]) if base and base.get(k) and a.get(k) else "—"
            pct = lambda x: "n/a" if x is None else f"{x * 100:.0f} %"
            rounds = " / ".join(f"{x:.0f}" for x in a["rounds"])
            print(f"| {scen} | {tgt} | {a['rps']:.0f} ({rounds}) | {f(a['p50'])} | {f(a['p99'])} | {f(a['cpu_ms_per_1k'], 1)} | {pct(a['sys'])} | {f(a['rss'], 1)} | "
                  f"{ratio('rps') if tgt.startswith('rampart') else '1.00'} | {round_ratios(a, base) if tgt.startswith('rampart') else '—'} | "
                  f"{ratio('p99') if tgt.startswith('rampart') else '1.00'} | "
                  f"{ratio('cpu_ms_per_1k') if tgt.startswith('rampart') else '1.00'} | {a['errors'] or '—'} |")

# Inspection: Rampart with CRS PL1 beside nginx + ModSecurity + the same CRS, and beside
# the bare proxies (nginx, and Rampart without inspection) of the same run.
waf_rows = [(s, t) for (s, t) in rows if t in ("rampart_waf", "modsec")]
if waf_rows:
    print()
    print("| scenario | proxy | req/s (rounds) | p50 ms | p99 ms | CPU ms / 1k req | RSS MiB | ÷ ModSecurity | ÷ bare nginx | ÷ Rampart without inspection | errors |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for scen in ("get", "post", "attack"):
        modsec, bare, plain = agg(scen, "modsec"), agg(scen, "nginx"), agg(scen, "rampart")
        for tgt in ("modsec", "rampart_waf"):
            a = agg(scen, tgt)
            if not a:
                continue
            f = lambda x, d=2: "n/a" if x is None else f"{x:.{d}f}"
            r = lambda b: f(a["rps"] / b["rps"]) if b and b.get("rps") else "—"
            rounds = " / ".join(f"{x:.0f}" for x in a["rounds"])
            print(f"| {scen} | {tgt} | {a['rps']:.0f} ({rounds}) | {f(a['p50'])} | {f(a['p99'])} | {f(a['cpu_ms_per_1k'], 1)} | {f(a['rss'], 1)} | "
                  f"{r(modsec)} | {r(bare)} | {r(plain)} | {a['errors'] or '—'} |")

# Rate limits: the same limit kept in process and in Redis, beside the bare proxy.
rl_rows = [(s, t) for (s, t) in rows if t in ("rampart_rl", "rampart_rl_redis")]
if rl_rows:
    print()
    print("| scenario | proxy | req/s (rounds) | p50 ms | p99 ms | CPU ms / 1k req | RSS MiB | ÷ in-process limit | ÷ Rampart without limit | errors |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for scen in ("get", "getkeys", "post"):
        local, plain = agg(scen, "rampart_rl"), agg(scen, "rampart")
        for tgt in ("rampart_rl", "rampart_rl_redis"):
            a = agg(scen, tgt)
            if not a:
                continue
            f = lambda x, d=2: "n/a" if x is None else f"{x:.{d}f}"
            r = lambda b: f(a["rps"] / b["rps"]) if b and b.get("rps") else "—"
            rounds = " / ".join(f"{x:.0f}" for x in a["rounds"])
            print(f"| {scen} | {tgt} | {a['rps']:.0f} ({rounds}) | {f(a['p50'])} | {f(a['p99'])} | {f(a['cpu_ms_per_1k'], 1)} | {f(a['rss'], 1)} | "
                  f"{r(local)} | {r(plain)} | {a['errors'] or '—'} |")
