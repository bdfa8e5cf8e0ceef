"""What deploy.py, ctl.py and the tests share: where the devnet lives, the contracts (compiled
with vyper, cached), the addresses file, LayerZero V2's PacketV1 codec and GUID, and the DVN's
signing rules."""

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import vyper
from eth_abi import encode as abi_encode
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_utils import keccak, to_checksum_address
from web3 import Web3

REPO_ROOT = Path(__file__).resolve().parent.parent
CONTRACTS_DIR = Path(__file__).resolve().parent / "contracts"

SOURCE_CHAIN_ID = 1  # models Ethereum
SOURCE_EID = 30101
TARGET_CHAIN_ID = 1030
TARGET_EID = 30212


def vid_for(eid):
    """A DVN's vid: "endpoint v1 eid if available OR endpoint v2 eid % 30_000" (DVN.sol)."""
    return eid % 30000


PACKET_VERSION = 1
PACKET_HEADER_SIZE = 81
VERIFY_SELECTOR = bytes.fromhex("0223536e")  # ReceiveUlnE2.verify(bytes,bytes32,uint64)
PACKET_SENT_TOPIC = keccak(text="PacketSent(bytes,bytes,address)")
DVN_FEE_PAID_TOPIC = keccak(text="DVNFeePaid(address[],address[],uint256[])")
PAYLOAD_VERIFIED_TOPIC = keccak(text="PayloadVerified(address,bytes,uint256,bytes32)")


def devnet_dir():
    return Path(os.environ.get("DVN_DEVNET_DIR") or REPO_ROOT / ".dvn-devnet").resolve()


def addresses_path():
    return devnet_dir() / "addresses.json"


def load_addresses():
    path = addresses_path()
    if not path.exists():
        raise SystemExit(f"{path} not found: start the devnet first (scripts/dvn-devnet.sh up)")
    return json.loads(path.read_text())


def save_addresses(addresses):
    path = addresses_path()
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(addresses, indent=2) + "\n")
    tmp.replace(path)  # readers never see a half-written file


def write_secret(path, text):
    """Write a file only its owner can read, created with that mode (never world-readable)."""
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


# ----------------------------------------------------------------------------------------------
# Contracts

def compile_contract(name):
    """(abi, bytecode) of contracts/<name>.vy, cached under the devnet directory by source hash
    and compiler version so that an unchanged contract is compiled once."""
    source = (CONTRACTS_DIR / f"{name}.vy").read_text()
    digest = hashlib.sha256(f"{vyper.__version__}\0{source}".encode()).hexdigest()[:16]
    cache = devnet_dir() / "build" / f"{name}-{digest}.json"
    if cache.exists():
        artifact = json.loads(cache.read_text())
    else:
        output = vyper.compile_code(source, contract_path=f"{name}.vy", output_formats=["abi", "bytecode"])
        artifact = {"abi": output["abi"], "bytecode": output["bytecode"]}
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps(artifact))
    return artifact["abi"], artifact["bytecode"]


def contract(w3, name, address):
    abi, _ = compile_contract(name)
    return w3.eth.contract(address=to_checksum_address(address), abi=abi)


def connect(rpc_url):
    w3 = Web3(Web3.HTTPProvider(rpc_url, request_kwargs={"timeout": 30}))
    if not w3.is_connected():
        raise SystemExit(f"no JSON-RPC answer from {rpc_url}")
    return w3


def transact(w3, call, sender):
    """Send a contract call from an account the node holds the key of; fail on a revert."""
    tx_hash = call.transact({"from": sender})
    receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=30)
    if receipt["status"] != 1:
        raise RuntimeError(f"transaction {tx_hash.hex()} reverted")
    return receipt


def hex0x(data):
    return "0x" + bytes(data).hex()


def address_to_bytes32(address):
    return bytes.fromhex(to_checksum_address(address)[2:]).rjust(32, b"\0")


# ----------------------------------------------------------------------------------------------
# PacketV1 (PacketV1Codec): header = version u8, nonce u64, srcEid u32, sender bytes32,
# dstEid u32, receiver bytes32 (81 bytes); payload = guid bytes32 ++ message.

def compute_guid(nonce, src_eid, sender, dst_eid, receiver):
    """GUID.generate: keccak256(abi.encodePacked(nonce, srcEid, sender, dstEid, receiver))."""
    return keccak(nonce.to_bytes(8, "big") + src_eid.to_bytes(4, "big") + sender + dst_eid.to_bytes(4, "big") + receiver)


@dataclass(frozen=True)
class Packet:
    nonce: int
    src_eid: int
    sender: bytes  # 32 bytes
    dst_eid: int
    receiver: bytes  # 32 bytes
    guid: bytes
    message: bytes
    version: int = PACKET_VERSION

    @classmethod
    def decode(cls, encoded):
        if len(encoded) < PACKET_HEADER_SIZE + 32:
            raise ValueError(f"packet of {len(encoded)} bytes is shorter than header and guid")
        return cls(
            version=encoded[0],
            nonce=int.from_bytes(encoded[1:9], "big"),
            src_eid=int.from_bytes(encoded[9:13], "big"),
            sender=encoded[13:45],
            dst_eid=int.from_bytes(encoded[45:49], "big"),
            receiver=encoded[49:81],
            guid=encoded[81:113],
            message=encoded[113:],
        )

    def header(self):
        return (
            self.version.to_bytes(1, "big") + self.nonce.to_bytes(8, "big") + self.src_eid.to_bytes(4, "big")
            + self.sender + self.dst_eid.to_bytes(4, "big") + self.receiver
        )

    def payload(self):
        return self.guid + self.message

    def encode(self):
        return self.header() + self.payload()

    def payload_hash(self):
        return keccak(self.payload())

    def expected_guid(self):
        return compute_guid(self.nonce, self.src_eid, self.sender, self.dst_eid, self.receiver)


# ----------------------------------------------------------------------------------------------
# DVN instructions

def verify_call_data(packet, confirmations):
    """ReceiveUln302.verify(packet header, payload hash, confirmations), as the DVN calls it."""
    return VERIFY_SELECTOR + abi_encode(["bytes", "bytes32", "uint64"], [packet.header(), packet.payload_hash(), confirmations])


def execute_hash(vid, target, call_data, expiration):
    """DVN.hashCallData: keccak256(abi.encodePacked(uint32 vid, address target, uint256
    expiration, bytes callData))."""
    return keccak(vid.to_bytes(4, "big") + bytes.fromhex(to_checksum_address(target)[2:]) + expiration.to_bytes(32, "big") + call_data)


def sign_execute(private_keys, vid, target, call_data, expiration):
    """The `signatures` of an ExecuteParam: each key's EIP-191 signature of the execute hash,
    65 bytes (r, s, v), concatenated in ascending order of signer address as MultiSig requires."""
    digest = encode_defunct(primitive=execute_hash(vid, target, call_data, expiration))
    signed = sorted(
        (int(Account.from_key(key).address, 16), Account.sign_message(digest, key).signature) for key in private_keys
    )
    return b"".join(signature for _, signature in signed)
