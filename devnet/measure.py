"""Send packets on the devnet's source chain and time each until our DVN verified it on the target.

    python devnet/measure.py --count N [--mode burst|single] [--interval S] [--floor C] [--timeout S] [--json FILE]

burst sends all N packets as fast as the chain takes them (or one every --interval seconds: a
stream); single sends one and waits until it is
verified before the next. One line per packet as it is verified: its nonce and guid, the time
from the send to PayloadVerified, and from the source block reaching its confirmations (the
receive library's, or the relayers' floor if higher) to PayloadVerified. Then a summary: packets
per second from the first send to the last verification, p50/p99/max of both latencies. A
watcher polls both chains every 20 ms, so each time is good to about that. Exit 1 if a packet is
not verified within --timeout seconds, or is verified more than once.
"""

import argparse
import json
import os
import statistics
import sys
import threading
import time

from web3.logs import DISCARD

import lz

POLL_SECONDS = 0.02


class Tracker:
    """What the watcher saw of each packet; shared by the sender and the watcher thread."""

    def __init__(self, required):
        self.required = required
        self.lock = threading.Lock()
        self.packets = {}  # guid -> record
        self.order = []
        self.verified_count = {}  # guid -> PayloadVerified seen

    def sent(self, guid, nonce, block):
        with self.lock:
            self.packets[guid] = {"nonce": nonce, "block": block, "sent": time.monotonic(), "confirmed": None, "verified": None}
            self.order.append(guid)

    def pending(self):
        with self.lock:
            return [g for g in self.order if self.packets[g]["verified"] is None]


def percentile(values, p):
    ordered = sorted(values)
    if not ordered:
        return None
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))]


def watch(tracker, addresses, stop):
    source = lz.connect(addresses["source"]["rpc_url"])
    target = lz.connect(addresses["target"]["rpc_url"])
    library = lz.contract(target, "ReceiveUln302", addresses["target"]["receive_library"])
    next_block = target.eth.block_number + 1
    while not stop.is_set():
        try:
            next_block = watch_once(tracker, source, target, library, next_block)
        except Exception as error:  # a chain busy or restarting: look again
            print(f"watcher: {error}", file=sys.stderr, flush=True)
        time.sleep(POLL_SECONDS)


def watch_once(tracker, source, target, library, next_block):
    """One look at both chains; the next target block to read."""
    now = time.monotonic()
    head = source.eth.block_number
    with tracker.lock:
        for record in tracker.packets.values():
            if record["confirmed"] is None and head >= record["block"] + tracker.required - 1:
                record["confirmed"] = now
    target_head = target.eth.block_number
    if target_head >= next_block:
        logs = target.eth.get_logs({
            "fromBlock": next_block,
            "toBlock": target_head,
            "address": library.address,
            "topics": [lz.PAYLOAD_VERIFIED_TOPIC],
        })
        seen = time.monotonic()
        for log in logs:
            header = library.events.PayloadVerified().process_log(log)["args"]["header"]
            if len(header) != lz.PACKET_HEADER_SIZE:
                continue
            guid = lz.hex0x(lz.Packet.decode(header + bytes(32)).expected_guid())
            with tracker.lock:
                record = tracker.packets.get(guid)
                if record is None:
                    continue  # an earlier run's packet
                tracker.verified_count[guid] = tracker.verified_count.get(guid, 0) + 1
                if record["verified"] is None:
                    record["verified"] = seen
                    if record["confirmed"] is None:  # confirmed and verified between two polls
                        record["confirmed"] = seen
                    print("packet nonce %d %s verified: %.0f ms after the send, %.0f ms after its confirmations" % (
                        record["nonce"], guid, (seen - record["sent"]) * 1000, (seen - record["confirmed"]) * 1000), flush=True)
        next_block = target_head + 1
    return next_block


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=10)
    parser.add_argument("--mode", choices=("burst", "single"), default="burst")
    parser.add_argument("--floor", type=int, default=1, help="the relayers' own confirmations floor")
    parser.add_argument("--timeout", type=float, default=120, help="seconds the last packet may take")
    parser.add_argument("--interval", type=float, default=0, help="burst: seconds between two sends (a stream)")
    parser.add_argument("--message-size", type=int, default=32)
    parser.add_argument("--json", help="write the figures to this file")
    parser.add_argument("--label", default="", help="a name for this run in the JSON")
    args = parser.parse_args()
    if args.count < 1:
        parser.error("--count: must be at least 1")

    addresses = lz.load_addresses()
    tracker = Tracker(required=max(int(addresses.get("confirmations", 1)), args.floor))
    stop = threading.Event()
    watcher = threading.Thread(target=watch, args=(tracker, addresses, stop), daemon=True)
    watcher.start()

    source = lz.connect(addresses["source"]["rpc_url"])
    endpoint = lz.contract(source, "Endpoint", addresses["source"]["endpoint"])
    receiver = lz.address_to_bytes32(addresses["target"]["receiver"])
    started = time.monotonic()
    for _ in range(args.count):
        call = endpoint.functions.send(lz.TARGET_EID, receiver, os.urandom(args.message_size), b"")
        receipt = lz.transact(source, call, addresses["source"]["sender"])
        (sent,) = endpoint.events.PacketSent().process_receipt(receipt, errors=DISCARD)
        packet = lz.Packet.decode(sent["args"]["encodedPayload"])
        guid = lz.hex0x(packet.guid)
        tracker.sent(guid, packet.nonce, receipt["blockNumber"])
        if args.interval:
            time.sleep(args.interval)
        if args.mode == "single":
            limit = time.monotonic() + args.timeout
            while tracker.pending() and time.monotonic() < limit:
                time.sleep(POLL_SECONDS)
    deadline = time.monotonic() + args.timeout
    while tracker.pending() and time.monotonic() < deadline:
        time.sleep(POLL_SECONDS)
    # A moment more to see a second verification of any packet, should one come.
    time.sleep(1)
    stop.set()
    watcher.join(timeout=5)

    with tracker.lock:
        records = [tracker.packets[g] for g in tracker.order]
        doubles = {g: n for g, n in tracker.verified_count.items() if n > 1}
    done = [r for r in records if r["verified"] is not None]
    missing = len(records) - len(done)
    after_send = [(r["verified"] - r["sent"]) * 1000 for r in done]
    after_confirmations = [(r["verified"] - r["confirmed"]) * 1000 for r in done]
    elapsed = (max(r["verified"] for r in done) - started) if done else 0.0
    figures = {
        "label": args.label,
        "mode": args.mode,
        "packets": len(records),
        "verified": len(done),
        "lost": missing,
        "double_verified": len(doubles),
        "confirmations": tracker.required,
        "seconds": round(elapsed, 3),
        "packets_per_second": round(len(done) / elapsed, 2) if elapsed else 0.0,
        "after_send_ms": {"p50": percentile(after_send, 50), "p99": percentile(after_send, 99), "max": max(after_send, default=None)},
        "after_confirmations_ms": {
            "p50": percentile(after_confirmations, 50),
            "p99": percentile(after_confirmations, 99),
            "max": max(after_confirmations, default=None),
            "mean": statistics.fmean(after_confirmations) if after_confirmations else None,
        },
    }
    print("%d of %d packets verified (%d lost, %d verified twice) in %.1f s: %.1f packets/s; after confirmations p50 %s ms, p99 %s ms" % (
        len(done), len(records), missing, len(doubles), elapsed, figures["packets_per_second"],
        "%.0f" % figures["after_confirmations_ms"]["p50"] if done else "-",
        "%.0f" % figures["after_confirmations_ms"]["p99"] if done else "-"), flush=True)
    if args.json:
        with open(args.json, "a") as out:
            out.write(json.dumps(figures) + "\n")
    if missing or doubles:
        sys.exit(1)


if __name__ == "__main__":
    main()
