"""Turns the JSON lines of scripts/bench-raft.sh into docs/benchmarks/raft.md."""
import json
import platform
import re
import statistics
import subprocess
import sys
from datetime import datetime, timezone


def pct(values, q):
    values = sorted(values)
    if not values:
        return float("nan")
    k = (len(values) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


def mib(kib):
    return f"{kib / 1024:.0f}" if kib is not None else "-"


def natural(label):
    """coordinator-2 before coordinator-10; the leader's mark does not move it."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", label)]


def main():
    _, _kind, path, cores, seconds, trials = sys.argv
    rows = [json.loads(line) for line in open(path) if line.strip().startswith("{")]
    loads = {(r["target"], r.get("workload", "write"), r["clients"]): r
             for r in rows if "writes_per_sec" in r}
    writes = {(t, c): r for (t, w, c), r in loads.items() if w == "write"}
    signings = {(t, c): r for (t, w, c), r in loads.items() if w == "signing"}
    idle = {r["target"]: r["rss_kib"] for r in rows if r.get("phase") == "idle"}
    failover = {t: [r["failover_ms"] for r in rows if r.get("target") == t and "failover_ms" in r]
                for t in ("mpc", "mpc-plain", "etcd")}
    etcd_version = subprocess.run(["etcd", "--version"], capture_output=True, text=True).stdout.split()[2]
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    top = max((c for _, _, c in loads), default=0)

    out = []
    out.append("# Coordinator Raft group vs etcd\n")
    out.append(f"Measured {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC on {cores} cores ({cpu}), "
               f"{platform.system()} {platform.release()}, by `scripts/bench-raft.sh` "
               f"(BENCH_SECONDS={seconds}, BENCH_TRIALS={trials}).\n")
    out.append("Both systems run five members as local processes on loopback, data on the same disk, "
               "each write acknowledged only after a quorum has synced it to disk. Clients are "
               "spread over all five members (followers forward to the leader in both systems); "
               "each client sends its next request when the last is answered, through the same "
               "Rust client (`mpc-bench`) over gRPC.\n")
    out.append("Ours runs with its three parties (party-1..3) attached and a 2-of-3 "
               "`schnorr-ed25519` key generated before anything is timed. Two workloads:\n")
    out.append("- **Writes**, a plain replicated write of ~1 KiB: ours `Keys.UpdateKey` setting "
               "the key's description to 1 KiB (one Raft entry; applied, it rewrites the key "
               "record and appends the update's id and an audit entry), etcd "
               f"{etcd_version} `KV.Put` of a 1 KiB value under a new key. No sessions are "
               "created, so the scheduler has nothing to do: this is the Raft comparison.")
    out.append("- **Signings**, ours only: `Sessions.CreateSigning` of a 1 KiB message with the "
               "key, carrying the initiator's approval (signed before the timed phase: the "
               "client's work); the parties run every signing, and each client follows its "
               "session on `WatchSession` to the end before it creates the next, so no more "
               "sessions are open than there are clients. *Create* is the time until the "
               "session is committed; *done* until it completed with its signature (commits of "
               "create, start and completion, the FROST rounds routed through the leader).\n")
    out.append("`mpc` runs as deployed: TLS 1.3 on every link (clients, parties, forwarding, "
               "Raft between members) and every call authenticated by the client's certificate; "
               "`mpc plain` is the same cluster with `--insecure-plaintext`.\n")

    out.append("## Writes\n")
    out.append("| clients | mpc writes/s | mpc p50 ms | mpc p99 ms | mpc plain writes/s | mpc plain p50 ms | TLS+auth cost (writes/s) | etcd writes/s | etcd p50 ms | etcd p99 ms | writes/s ours/etcd |")
    out.append("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for clients in sorted({c for _, c in writes}):
        m, p, e = (writes.get((t, clients)) for t in ("mpc", "mpc-plain", "etcd"))
        if not m or not e:
            continue
        plain = (f"{p['writes_per_sec']:.0f} | {p['p50_ms']:.2f} | "
                 f"{(1 - m['writes_per_sec'] / p['writes_per_sec']) * 100:+.1f} % |") if p else "- | - | - |"
        out.append(f"| {clients} | {m['writes_per_sec']:.0f} | {m['p50_ms']:.2f} | {m['p99_ms']:.2f} | "
                   f"{plain} {e['writes_per_sec']:.0f} | {e['p50_ms']:.2f} | {e['p99_ms']:.2f} | "
                   f"{m['writes_per_sec'] / e['writes_per_sec']:.2f} |")

    if signings:
        out.append("\n## Signings with the parties running\n")
        out.append("| system | clients | signatures/s | create p50 ms | create p99 ms | done p50 ms | done p99 ms | failed or unfinished |")
        out.append("|---|---:|---:|---:|---:|---:|---:|---:|")
        for (t, clients), r in sorted(signings.items(), key=lambda kv: (kv[0][0], kv[0][1])):
            out.append(f"| {t} | {clients} | {r['sessions_per_sec']:.0f} | {r['p50_ms']:.2f} | "
                       f"{r['p99_ms']:.2f} | {r['done_p50_ms']:.2f} | {r['done_p99_ms']:.2f} | "
                       f"{r['failed'] + r['unfinished']} |")

    errors = {f"{t} {w} x{c}": r["errors"] for (t, w, c), r in loads.items() if r["errors"]}
    if errors:
        out.append(f"\nFailed requests during the runs: {errors}.")
    in_loop = {f"{t} {w} x{c}": r["prepared_in_loop"] for (t, w, c), r in loads.items()
               if r.get("prepared_in_loop")}
    if in_loop:
        out.append(f"\nApprovals signed inside the timed phase (the prepared ones ran out): {in_loop}.")

    mem = [s for s in ("mpc", "etcd") if s in idle]
    if mem:
        out.append("\n## Resident memory\n")
        out.append(f"VmRSS of each process (`/proc/PID/status`) in MiB: idle after startup (ours: "
                   f"and key generation), and the maximum of samples taken every 100 ms through "
                   f"the {top}-client loads. `mpc` is the run with TLS.\n")
        out.append(f"| system | process | idle MiB | {top}-client writes MiB | {top}-client signings MiB |")
        out.append("|---|---|---:|---:|---:|")
        for s in mem:
            under_w = writes.get((s, top), {}).get("rss_max_kib", {})
            under_s = signings.get((s, top), {}).get("rss_max_kib", {})
            for label in sorted(idle[s], key=natural):
                sig = mib(under_s.get(label)) if s == "mpc" else "n/a"
                out.append(f"| {s} | {label} | {mib(idle[s][label])} | {mib(under_w.get(label))} | {sig} |")
        plain = idle.get("mpc-plain")
        if plain:
            peak = {}
            for (t, _, c), r in loads.items():
                if t == "mpc-plain" and c == top:
                    for label, kib in r.get("rss_max_kib", {}).items():
                        peak[label] = max(peak.get(label, 0), kib)
            coord = [v for k, v in peak.items() if k.startswith("coordinator")]
            coord_idle = [v for k, v in plain.items() if k.startswith("coordinator")]
            if coord and coord_idle:
                out.append(f"\nWith `--insecure-plaintext` the coordinators use {mib(min(coord_idle))}-"
                           f"{mib(max(coord_idle))} MiB idle and at most {mib(max(coord))} MiB under "
                           f"the {top}-client loads.")

    out.append("\n## Failover\n")
    out.append("The leader is killed with SIGKILL; the time is from the kill to the first plain "
               "write (ours `Keys.UpdateKey`, etcd `KV.Put`) acknowledged through a surviving "
               "member. The probe (`mpc-bench failover`, the same for both) gives each write a "
               "500 ms deadline and on any error or timeout moves at once to the next survivor. "
               "The killed member is restarted, and the next trial starts "
               "2 s after all five members report ready (BENCH_SETTLE).\n")
    out.append("| system | trials | min ms | p50 ms | p90 ms | max ms | mean ms |")
    out.append("|---|---:|---:|---:|---:|---:|---:|")
    for t, vals in failover.items():
        if vals:
            out.append(f"| {t} | {len(vals)} | {min(vals):.0f} | {pct(vals, 0.5):.0f} | {pct(vals, 0.9):.0f} | "
                       f"{max(vals):.0f} | {statistics.mean(vals):.0f} |")
    out.append("\nTimings that explain the failover figures: ours elects after 150-300 ms without a "
               "heartbeat (50 ms), and a follower refuses to vote for 300 ms after it last heard the leader (openraft lease); etcd's defaults are a 100 ms heartbeat and a 1000 ms election "
               "timeout.")
    print("\n".join(out))


if __name__ == "__main__":
    main()
