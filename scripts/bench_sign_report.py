"""Turns the JSON lines of scripts/bench-sign.sh into docs/benchmarks/sign.md."""
import json
import sys
from datetime import datetime, timezone


def main():
    _, path, cores, command = sys.argv
    rows = [json.loads(l) for l in open(path) if l.strip().startswith("{")]
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")

    def find(bench, place, **kw):
        for r in rows:
            if r["bench"] == bench and r["place"] == place and all(r.get(k) == v for k, v in kw.items()):
                return r
        return None

    out = ["# Threshold signing speed\n",
           f"Measured {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC on {cores} cores ({cpu}), release build.\n",
           f"Command: `{command}`\n",
           "2-of-3 keys. *In process*: all parties in one process, messages through an in-memory router, "
           "no network, no disk. *Cluster*: five coordinators and three parties as processes on loopback; "
           "the time is the client's, one `CreateSigning` call with `wait` set, from the request to the "
           "answer carrying the signature (Raft commits of the session's writes, routing of every envelope "
           "through the leader, AES-GCM share store reads, signature verification by the leader).\n",
           "*Raft commits per signing*: the log entries each signing cost, one at a time and in the burst. "
           "Each coordinator's last applied index is read (Cluster.GetStatus) before and after the measured "
           "batch, once the nodes agree; the leader's difference, less the entries of presignature refill "
           "in the same window, is divided by the number of signings. Refill entries are counted from the "
           "presign sessions' records: each creation, start and end stamped in the window is one entry (a "
           "creation that also started its session, one stamp, one entry); an entry that batched refill with "
           "a signing's command is subtracted all the same, so the figure errs low by at most those. Batching "
           "puts several commands in one entry, so a burst costs fewer entries per signing than one at a time.\n",
           "Every signature the cluster returned was verified against the key's public key before it "
           "was counted; requests that ended without one are counted as failed and left out of the "
           "times. Each batch opens its connection before its clock starts.\n",
           "## Signing\n",
           "| scheme | mode | in process p50 / p99 (ms) | cluster p50 / p99 (ms) | cluster / in process (p50) | cluster sig/s one at a time | cluster sig/s burst | Raft commits per signing (one at a time; burst) |",
           "|---|---|---|---|---|---|---|---|"]
    for scheme, mode in [("ecdsa-secp256k1", "presignature"), ("ecdsa-secp256k1", "full protocol"),
                         ("schnorr-ed25519", "FROST"), ("schnorr-bip340", "FROST")]:
        a = find("sign", "in-process", scheme=scheme, mode=mode)
        b = find("sign", "cluster", scheme=scheme, mode=mode)
        burst = find("sign_burst", "cluster", scheme=scheme, mode=mode)
        fmt = lambda r: f"{r['p50_ms']:.2f} / {r['p99_ms']:.2f}" if r else "-"
        ratio = f"{b['p50_ms'] / a['p50_ms']:.1f}x" if a and b and a["p50_ms"] else "-"
        rate = f"{b['per_sec']:.1f}" if b else "-"
        brate = f"{burst['per_sec']:.1f} (x{burst['concurrency']})" if burst else "-"
        hits = f", {b['presignature_hits']}/{b['count']} from a presignature" if b and b.get("presignature_hits") else ""
        failed = sum(r.get("failed", 0) for r in (b, burst) if r)
        hits += f", {failed} failed" if failed else ""

        def commits(r):
            if not r or "raft_commits_per_signing" not in r:
                return "-"
            refill = f" ({r['presign_entries']} refill entries left out)" if r.get("presign_entries") else ""
            return f"{r['raft_commits_per_signing']:.2f}{refill}"
        out.append(f"| {scheme} | {mode}{hits} | {fmt(a)} | {fmt(b)} | {ratio} | {rate} | {brate} | {commits(b)}; {commits(burst)} |")
    out.append("")
    out.append("In-process bursts (all parties of every signing share the same two cores):\n")
    for r in rows:
        if r["bench"] == "sign_burst" and r["place"] == "in-process":
            out.append(f"- {r['scheme']} {r['mode']}: {r['per_sec']:.1f} signatures/s with {r['concurrency']} at once (p50 {r['p50_ms']:.1f} ms)")
    out.append("\n## Presignatures\n")
    p = find("presign", "in-process")
    if p:
        out.append(f"- presigning in process: p50 {p['p50_ms']:.0f} ms, p99 {p['p99_ms']:.0f} ms ({1000 / p['p50_ms']:.1f} per second one at a time)")
    r = find("presign_refill", "cluster")
    if r:
        out.append(f"- refill through the cluster (2 presign sessions at a time): {r['per_sec']:.2f} presignatures per second ({r['count']} made)")
    out.append("\n## Key generation\n")
    out.append("| scheme | auxiliary info | in process p50 (ms) | cluster p50 (ms) | cluster keys/s (3 in a row, measured) |")
    out.append("|---|---|---|---|---|")
    for scheme in ["ecdsa-secp256k1", "schnorr-ed25519", "schnorr-bip340"]:
        a = find("keygen", "in-process", scheme=scheme)
        b = find("keygen", "cluster", scheme=scheme, aux_info="existing")
        out.append(f"| {scheme} | existing | {a['p50_ms']:.1f} | {b['p50_ms']:.1f} | {b['per_sec']:.2f} |" if a and b else f"| {scheme} | existing | - | - | - |")
    g = find("keygen", "cluster", aux_info="generated")
    aux = find("aux_info", "in-process")
    if g:
        alone = f"{aux['ms']:.0f} (aux info alone)" if aux else "-"
        out.append(f"| ecdsa-secp256k1 | generated in the session (first key of a group; primes from the pool) | {alone} | {g['ms']:.0f} | - |")
    out.append("\nRaw results (JSON lines):\n\n```")
    out.extend(json.dumps(r) for r in rows)
    out.append("```")
    print("\n".join(out))


main()
