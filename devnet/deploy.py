"""Deploy the LayerZero V2 devnet contracts on both chains and write addresses.json.

Source chain: EndpointV2 (send side), SendUln302 registered with it, a DVN contract (the address
DVNFeePaid names as ours), and a second SendUln302 the endpoint does not know (for malformed
"unknown library" packets). Target chain: ReceiveUln302 and our DVN, whose admin is a fresh
submitter account (key in submitter.key, mode 0600) funded with ether.

    python devnet/deploy.py [--source-rpc URL] [--target-rpc URL]
                            [--signers 0xA,0xB,0xC --quorum 2] [--confirmations 2]

Without --signers, three development keys are made and kept in dev-signers.json (mode 0600);
the real signer set is installed later with `ctl.py set-signers`.
"""

import argparse
import json

from eth_account import Account
from eth_utils import to_checksum_address

import lz

SUBMITTER_FUNDS_WEI = 100 * 10**18
# A nominal per-packet fee reported for our DVN in DVNFeePaid (bookkeeping only).
DVN_FEE_WEI = 10**15
DEV_SIGNER_COUNT = 3


def deploy(w3, name, deployer, *args):
    abi, bytecode = lz.compile_contract(name)
    receipt = lz.transact(w3, w3.eth.contract(abi=abi, bytecode=bytecode).constructor(*args), deployer)
    return receipt["contractAddress"]


def uln_config(confirmations, required_dvns):
    """UlnConfig(confirmations, requiredDVNCount, optionalDVNCount, optionalDVNThreshold,
    requiredDVNs, optionalDVNs), required DVNs sorted as the libraries demand."""
    required = sorted(required_dvns, key=lambda a: int(a, 16))
    return (confirmations, len(required), 0, 0, required, [])


def parse_signers(text):
    return [to_checksum_address(s.strip()) for s in text.split(",") if s.strip()]


def make_dev_signers(directory):
    keys = [Account.create() for _ in range(DEV_SIGNER_COUNT)]
    lz.write_secret(
        directory / "dev-signers.json",
        json.dumps({"keys": ["0x" + bytes(k.key).hex() for k in keys], "addresses": [k.address for k in keys]}, indent=2) + "\n",
    )
    return [k.address for k in keys]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source-rpc", default="http://127.0.0.1:8545")
    parser.add_argument("--target-rpc", default="http://127.0.0.1:8546")
    parser.add_argument("--signers", type=parse_signers, help="DVN signer addresses, comma-separated")
    parser.add_argument("--quorum", type=int, default=2)
    parser.add_argument("--confirmations", type=int, default=2, help="block confirmations in the ULN configs")
    args = parser.parse_args()

    directory = lz.devnet_dir()
    directory.mkdir(parents=True, exist_ok=True)
    signers = args.signers or make_dev_signers(directory)
    if not 0 < args.quorum <= len(signers):
        parser.error(f"quorum {args.quorum} needs between 1 and {len(signers)} signers")

    source, target = lz.connect(args.source_rpc), lz.connect(args.target_rpc)
    for w3, expected in ((source, lz.SOURCE_CHAIN_ID), (target, lz.TARGET_CHAIN_ID)):
        if w3.eth.chain_id != expected:
            raise SystemExit(f"{w3.provider.endpoint_uri} has chain id {w3.eth.chain_id}, expected {expected}")

    # Source chain. Account 0 deploys and owns; account 1 is the application sending packets.
    source_deployer, source_sender = source.eth.accounts[0], source.eth.accounts[1]
    endpoint = deploy(source, "Endpoint", source_deployer, lz.SOURCE_EID)
    send_library = deploy(source, "SendUln302", source_deployer, endpoint)
    rogue_library = deploy(source, "SendUln302", source_deployer, endpoint)
    source_dvn = deploy(source, "DVN", source_deployer, lz.vid_for(lz.SOURCE_EID), signers, args.quorum, [source_deployer])
    lz.transact(source, lz.contract(source, "Endpoint", endpoint).functions.setSendLibrary(send_library), source_deployer)
    library = lz.contract(source, "SendUln302", send_library)
    lz.transact(source, library.functions.setDefaultUlnConfig(lz.TARGET_EID, uln_config(args.confirmations, [source_dvn])), source_deployer)
    lz.transact(source, library.functions.setDVNFee(source_dvn, DVN_FEE_WEI), source_deployer)

    # Target chain. Account 0 deploys and owns; account 1 stands for the receiving application.
    target_deployer, receiver = target.eth.accounts[0], target.eth.accounts[1]
    submitter = Account.create()
    key_file = directory / "submitter.key"
    lz.write_secret(key_file, "0x" + bytes(submitter.key).hex() + "\n")
    target.provider.make_request("devnet_fund", [submitter.address, hex(SUBMITTER_FUNDS_WEI)])
    receive_library = deploy(target, "ReceiveUln302", target_deployer)
    target_dvn = deploy(target, "DVN", target_deployer, lz.vid_for(lz.TARGET_EID), signers, args.quorum, [submitter.address])
    lz.transact(
        target,
        lz.contract(target, "ReceiveUln302", receive_library).functions.setDefaultUlnConfig(
            lz.SOURCE_EID, uln_config(args.confirmations, [target_dvn])
        ),
        target_deployer,
    )

    addresses = {
        "source": {
            "chain_id": lz.SOURCE_CHAIN_ID,
            "eid": lz.SOURCE_EID,
            "rpc_url": args.source_rpc,
            "endpoint": endpoint,
            "send_library": send_library,
            "dvn": source_dvn,
            "vid": lz.vid_for(lz.SOURCE_EID),
            "sender": source_sender,
            "owner": source_deployer,
            "test_rogue_send_library": rogue_library,
        },
        "target": {
            "chain_id": lz.TARGET_CHAIN_ID,
            "eid": lz.TARGET_EID,
            "rpc_url": args.target_rpc,
            "receive_library": receive_library,
            "dvn": target_dvn,
            "vid": lz.vid_for(lz.TARGET_EID),
            "dvn_admin": submitter.address,
            "submitter_key_file": str(key_file),
            "receiver": receiver,
            "owner": target_deployer,
        },
        "dvn": {"signers": signers, "quorum": args.quorum},
        "confirmations": args.confirmations,
    }
    lz.save_addresses(addresses)
    print(json.dumps(addresses, indent=2))


if __name__ == "__main__":
    main()
