"""Turns the JSON lines of scripts/bench-raft.sh into docs/benchmarks/raft.md."""
import json
import platform
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


def main():
    _, _kind, path, cores, seconds, trials = sys.argv
    rows = [json.loads(line) for line in open(path) if line.strip().startswith("{")]
    writes = {(r["target"], r["clients"]): r for r in rows if "writes_per_sec" in r}
    failover = {t: [r["failover_ms"] for r in rows if r.get("target") == t and "failover_ms" in r]
                for t in ("mpc", "mpc-plain", "etcd")}
    etcd_version = subprocess.run(["etcd", "--version"], capture_output=True, text=True).stdout.split()[2]
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")

    out = []
    out.append("# Coordinator Raft group vs etcd\n")
    out.append(f"Measured {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC on {cores} cores ({cpu}), "
               f"{platform.system()} {platform.release()}, by `scripts/bench-raft.sh` "
               f"(BENCH_SECONDS={seconds}, BENCH_TRIALS={trials}).\n")
    out.append("Both systems run five members as local processes on loopback, data on the same disk, "
               "each write acknowledged only after a quorum has synced it to disk. Workload: ~1 KiB "
               "per write over gRPC from the same Rust client (`mpc-bench`); ours creates a keygen "
               "session record through the public API (`Sessions.CreateKeygen` with a 1 KiB "
               f"description), etcd {etcd_version} takes a `KV.Put` of a 1 KiB value. Clients are "
               "spread over all five members (followers forward to the leader in both systems).\n")
    out.append("`mpc` runs as deployed: TLS 1.3 on every link (clients, forwarding, Raft "
               "between members) and every call authenticated by the client's certificate; "
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
    errors = {k: r["errors"] for k, r in writes.items() if r["errors"]}
    if errors:
        out.append(f"\nFailed requests during the runs: {errors}.")
    out.append("\n## Failover\n")
    out.append("The leader is killed with SIGKILL; the time is from the kill to the first write "
               "acknowledged through a surviving member. The probe (`mpc-bench failover`, the same "
               "for both) gives each write a 500 ms deadline and on any error or timeout moves at "
               "once to the next survivor. "
               "The killed member is restarted, and the next trial starts 2 s after all five members "
               "report ready (BENCH_SETTLE).\n")
    out.append("| system | trials | p50 ms | p90 ms | max ms | mean ms |")
    out.append("|---|---:|---:|---:|---:|---:|")
    for t, vals in failover.items():
        if vals:
            out.append(f"| {t} | {len(vals)} | {pct(vals, 0.5):.0f} | {pct(vals, 0.9):.0f} | "
                       f"{max(vals):.0f} | {statistics.mean(vals):.0f} |")
    out.append("\nTimings that explain the failover figures: ours elects after 150-300 ms without a "
               "heartbeat (50 ms), and a follower refuses to vote for 300 ms after it last heard the leader (openraft lease); etcd's defaults are a 100 ms heartbeat and a 1000 ms election "
               "timeout.")
    print("\n".join(out))


if __name__ == "__main__":
    main()
