"""Drive a running devnet (addresses from addresses.json in $DVN_DEVNET_DIR or .dvn-devnet/).

    ctl.py set-signers --signers 0xA,0xB,0xC --quorum 2   install the DVN signer set (both chains)
    ctl.py grant-admin ADDRESS                            let ADDRESS submit DVN.execute on target
    ctl.py fund ADDRESS WEI --chain source|target         send ether from a funded account
    ctl.py send --count N [--message-size B]              send N packets; one JSON line each
    ctl.py send-malformed --kind KIND                     one bad packet (KIND below); a JSON line
    ctl.py verified GUID|all                              PayloadVerified on target; JSON lines
    ctl.py mine N --chain source|target                   mine N empty blocks
    ctl.py head --chain source|target                     the head block number
    ctl.py snapshot --chain source|target                 print a snapshot id
    ctl.py revert ID --chain source|target                back to the snapshot; later blocks go
    ctl.py offline|online --chain source|target           the endpoint answers 503 / serves again

Malformed kinds: version (PacketV1 version 2), eid (a source eid that is not this chain's),
dst-eid (a destination no one serves), guid (a GUID that does not match the header), library
(a well-formed packet from a send library the endpoint does not use).
"""

import argparse
import json
import os
import sys

from eth_utils import to_checksum_address
from web3 import Web3
from web3.logs import DISCARD

import lz

MALFORMED_KINDS = ("version", "eid", "dst-eid", "guid", "library")
# The eid malformed packets claim when they lie about an endpoint: assigned to no chain here.
UNKNOWN_EID = 30999
# The contracts' bound on a message (MAX_MESSAGE in Endpoint.vy and SendUln302.vy).
MAX_MESSAGE_SIZE = 10000


def emit(record):
    print(json.dumps(record), flush=True)


def chain_url(addresses, name):
    return addresses[name]["rpc_url"]


def devnet_rpc(addresses, chain, method, params):
    """A raw call, for the devnet's own methods (no connectivity check: it may be offline)."""
    w3 = Web3(Web3.HTTPProvider(chain_url(addresses, chain)))
    response = w3.provider.make_request(method, params)
    if "error" in response:
        raise SystemExit(f"{method}: {response['error']}")
    return response["result"]


# ----------------------------------------------------------------------------------------------

def set_signers(addresses, signers, quorum):
    for chain in ("source", "target"):
        w3 = lz.connect(chain_url(addresses, chain))
        dvn = lz.contract(w3, "DVN", addresses[chain]["dvn"])
        lz.transact(w3, dvn.functions.devnetSetSigners(signers, quorum), addresses[chain]["owner"])
    addresses["dvn"] = {"signers": signers, "quorum": quorum}
    lz.save_addresses(addresses)
    emit(addresses["dvn"])


def grant_admin(addresses, account):
    w3 = lz.connect(chain_url(addresses, "target"))
    dvn = lz.contract(w3, "DVN", addresses["target"]["dvn"])
    receipt = lz.transact(w3, dvn.functions.grantRole(dvn.functions.ADMIN_ROLE().call(), account), addresses["target"]["owner"])
    emit({"admin": account, "tx_hash": receipt["transactionHash"].to_0x_hex()})


def send(addresses, count, message_size):
    w3 = lz.connect(chain_url(addresses, "source"))
    endpoint = lz.contract(w3, "Endpoint", addresses["source"]["endpoint"])
    receiver = lz.address_to_bytes32(addresses["target"]["receiver"])
    for _ in range(count):
        call = endpoint.functions.send(lz.TARGET_EID, receiver, os.urandom(message_size), b"")
        receipt = lz.transact(w3, call, addresses["source"]["sender"])
        # The receipt's other log, DVNFeePaid, is the library's: not in the endpoint's ABI.
        (sent,) = endpoint.events.PacketSent().process_receipt(receipt, errors=DISCARD)
        packet = lz.Packet.decode(sent["args"]["encodedPayload"])
        emit({
            "guid": lz.hex0x(packet.guid),
            "nonce": packet.nonce,
            "block_number": receipt["blockNumber"],
            "tx_hash": receipt["transactionHash"].to_0x_hex(),
        })


def send_malformed(addresses, kind):
    w3 = lz.connect(chain_url(addresses, "source"))
    source = addresses["source"]
    endpoint = lz.contract(w3, "Endpoint", source["endpoint"])
    library = lz.contract(w3, "SendUln302", source["send_library"])
    sender = lz.address_to_bytes32(source["sender"])
    receiver = lz.address_to_bytes32(addresses["target"]["receiver"])

    # Start from the packet the sender's next send would make (its nonce is not consumed), then
    # break exactly one thing.
    nonce = endpoint.functions.outboundNonce(source["sender"], lz.TARGET_EID, receiver).call() + 1
    fields = {"nonce": nonce, "src_eid": lz.SOURCE_EID, "sender": sender, "dst_eid": lz.TARGET_EID, "receiver": receiver}
    if kind == "eid":
        fields["src_eid"] = UNKNOWN_EID
    elif kind == "dst-eid":
        fields["dst_eid"] = UNKNOWN_EID
    guid = lz.compute_guid(**fields)
    if kind == "guid":
        guid = os.urandom(32)
    packet = lz.Packet(guid=guid, message=os.urandom(32), version=2 if kind == "version" else lz.PACKET_VERSION, **fields)

    # The DVNFeePaid that precedes it names the DVNs the real library would name for the path.
    config = library.functions.getUlnConfig(source["sender"], lz.TARGET_EID).call()
    required, optional = config[4], config[5]
    fees = [library.functions.dvnFee(dvn).call() for dvn in required + optional]
    emitting_library = source["test_rogue_send_library"] if kind == "library" else source["send_library"]
    call = endpoint.functions.testEmitPacketSent(packet.encode(), b"", emitting_library, emitting_library, required, optional, fees)
    receipt = lz.transact(w3, call, source["owner"])
    emit({
        "kind": kind,
        "guid": lz.hex0x(packet.guid),
        "nonce": nonce,
        "send_library": emitting_library,
        "block_number": receipt["blockNumber"],
        "tx_hash": receipt["transactionHash"].to_0x_hex(),
    })


def verified(addresses, which):
    """Print every PayloadVerified on the target (or those of one GUID); exit 1 if none."""
    w3 = lz.connect(chain_url(addresses, "target"))
    receive_library = lz.contract(w3, "ReceiveUln302", addresses["target"]["receive_library"])
    logs = w3.eth.get_logs({
        "fromBlock": 0,
        "toBlock": "latest",
        "address": receive_library.address,
        "topics": [lz.PAYLOAD_VERIFIED_TOPIC],
    })
    wanted = None if which == "all" else bytes.fromhex(which.removeprefix("0x"))
    found = 0
    for log in logs:
        args = receive_library.events.PayloadVerified().process_log(log)["args"]
        header = args["header"]
        if len(header) != lz.PACKET_HEADER_SIZE:
            continue  # not a packet header: nothing to attribute it to
        # The header is all a verification carries; the GUID follows from it.
        packet = lz.Packet.decode(header + bytes(32))
        guid = packet.expected_guid()
        if wanted is not None and guid != wanted:
            continue
        found += 1
        emit({
            "guid": lz.hex0x(guid),
            "nonce": packet.nonce,
            "dvn": args["dvn"],
            "confirmations": args["confirmations"],
            "payload_hash": lz.hex0x(args["proofHash"]),
            "block_number": log["blockNumber"],
            "block_timestamp": w3.eth.get_block(log["blockNumber"])["timestamp"],
            "tx_hash": log["transactionHash"].to_0x_hex(),
        })
    if wanted is not None and not found:
        sys.exit(1)


# ----------------------------------------------------------------------------------------------

def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    chain_choice = {"choices": ("source", "target"), "required": True}

    command = commands.add_parser("set-signers")
    command.add_argument("--signers", required=True, type=lambda s: [to_checksum_address(a) for a in s.split(",")])
    command.add_argument("--quorum", required=True, type=int)
    command = commands.add_parser("grant-admin")
    command.add_argument("address", type=to_checksum_address)
    command = commands.add_parser("fund")
    command.add_argument("address", type=to_checksum_address)
    command.add_argument("wei", type=int)
    command.add_argument("--chain", **chain_choice)
    command = commands.add_parser("send")
    command.add_argument("--count", type=int, default=1)
    command.add_argument("--message-size", type=int, default=32, choices=range(MAX_MESSAGE_SIZE + 1), metavar="BYTES")
    command = commands.add_parser("send-malformed")
    command.add_argument("--kind", choices=MALFORMED_KINDS, required=True)
    command = commands.add_parser("verified")
    command.add_argument("guid", help="a packet GUID (hex) or 'all'")
    command = commands.add_parser("mine")
    command.add_argument("count", type=int)
    command.add_argument("--chain", **chain_choice)
    command = commands.add_parser("head")
    command.add_argument("--chain", **chain_choice)
    command = commands.add_parser("snapshot")
    command.add_argument("--chain", **chain_choice)
    command = commands.add_parser("revert")
    command.add_argument("id", type=lambda s: int(s, 0), help="the id `snapshot` printed")
    command.add_argument("--chain", **chain_choice)
    for name in ("offline", "online"):
        commands.add_parser(name).add_argument("--chain", **chain_choice)
    args = parser.parse_args()

    addresses = lz.load_addresses()
    if args.command == "set-signers":
        set_signers(addresses, args.signers, args.quorum)
    elif args.command == "grant-admin":
        grant_admin(addresses, args.address)
    elif args.command == "fund":
        emit({"tx_hash": devnet_rpc(addresses, args.chain, "devnet_fund", [args.address, hex(args.wei)])})
    elif args.command == "send":
        send(addresses, args.count, args.message_size)
    elif args.command == "send-malformed":
        send_malformed(addresses, args.kind)
    elif args.command == "verified":
        verified(addresses, args.guid)
    elif args.command == "mine":
        devnet_rpc(addresses, args.chain, "evm_mine", [hex(args.count)])
        emit({"chain": args.chain, "block_number": int(devnet_rpc(addresses, args.chain, "eth_blockNumber", []), 16)})
    elif args.command == "head":
        emit({"chain": args.chain, "block_number": int(devnet_rpc(addresses, args.chain, "eth_blockNumber", []), 16)})
    elif args.command == "snapshot":
        emit({"chain": args.chain, "snapshot": devnet_rpc(addresses, args.chain, "evm_snapshot", [])})
    elif args.command == "revert":
        if not devnet_rpc(addresses, args.chain, "evm_revert", [hex(args.id)]):
            raise SystemExit(f"no snapshot {args.id} on {args.chain}")
        emit({"chain": args.chain, "block_number": int(devnet_rpc(addresses, args.chain, "eth_blockNumber", []), 16)})
    else:
        devnet_rpc(addresses, args.chain, "devnet_setOffline", [args.command == "offline"])
        emit({"chain": args.chain, "offline": args.command == "offline"})


if __name__ == "__main__":
    main()
