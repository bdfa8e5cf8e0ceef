"""An Ethereum JSON-RPC endpoint over py-evm, for the DVN relayer's devnet.

One process is one chain: an EthereumTester with the PyEVMBackend (Prague rules) served over
HTTP on loopback, with every transaction mined into its own block at once (automine). It speaks
the subset of the Ethereum JSON-RPC API that alloy's HTTP provider uses, encoded as a node
encodes it, plus test controls:

    evm_mine [count]            mine empty blocks
    evm_snapshot / evm_revert   revert to a snapshot; blocks mined after it are replaced (a reorg)
    devnet_setOffline bool      while true, every other request is answered HTTP 503
    devnet_fund address wei     send ether from a funded account

eth-tester applies and signs transactions, mines, and keeps snapshots. Blocks, transactions,
receipts and logs are read from py-evm directly, because eth-tester's views differ from a node's
(receipts without logsBloom, per-receipt log indices, padded extraData), and eth_call and
eth_estimateGas run in py-evm's costless state as a node does: no fees, any sender, and the
revert data is kept for the error object.

    python devnet/server.py --port 8546 --chain-id 1030 [--host 127.0.0.1] [--verbose]
"""

import argparse
import json
import sys
import threading
import time
import traceback
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import rlp
from eth._utils.address import generate_contract_address
from eth.exceptions import HeaderNotFound, Revert, TransactionNotFound, VMError
from eth.vm.forks.berlin.transactions import TypedTransaction
from eth.vm.spoof import SpoofTransaction
from eth_abi import decode as abi_decode
from eth_tester import EthereumTester, PyEVMBackend
from eth_tester.exceptions import ValidationError as TesterValidationError
from eth_utils import ValidationError as EvmValidationError
from eth_utils import to_checksum_address

# The priority fee the devnet suggests (eth_maxPriorityFeePerGas, eth_gasPrice).
SUGGESTED_PRIORITY_FEE = 10**9
# The transaction types the devnet accepts: legacy (EIP-155), EIP-2930 and EIP-1559.
SUPPORTED_TX_TYPES = (0, 1, 2)
# Error(string), the ABI of a revert reason.
ERROR_STRING_SELECTOR = bytes.fromhex("08c379a0")
# geth's cap on eth_feeHistory's block count.
MAX_FEE_HISTORY_BLOCKS = 1024
# The eth-tester account that funds others (devnet_fund): the last one, so that the accounts a
# deployment uses first keep predictable nonces.
FAUCET_ACCOUNT_INDEX = -1

# JSON-RPC error codes.
PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
SERVER_ERROR = -32000
EXECUTION_REVERTED = 3


class RpcError(Exception):
    def __init__(self, code, message, data=None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data

    def to_json(self):
        error = {"code": self.code, "message": self.message}
        if self.data is not None:
            error["data"] = self.data
        return error


# ----------------------------------------------------------------------------------------------
# Encoding: quantities are minimal hex ("0x0", "0x1a"), data is hex of the exact bytes.

def quantity(value):
    return hex(value)


def hexdata(value):
    return "0x" + bytes(value).hex()


def hash32(value):
    """A 32-byte word py-evm keeps as an integer (log topics, storage slots and values)."""
    return hexdata(value.to_bytes(32, "big"))


def address_or_none(value):
    return to_checksum_address(value) if value else None


def parse_quantity(value, name="quantity"):
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str) and value[:2] in ("0x", "0X") and len(value) > 2:
        try:
            return int(value, 16)
        except ValueError:
            pass
    raise RpcError(INVALID_PARAMS, f"invalid {name}: {value!r}")


def parse_data(value, name="data", size=None):
    if isinstance(value, str) and value[:2] in ("0x", "0X"):
        try:
            raw = bytes.fromhex(value[2:])
        except ValueError:
            raw = None
        if raw is not None and (size is None or len(raw) == size):
            return raw
    raise RpcError(INVALID_PARAMS, f"invalid {name}: {value!r}")


def parse_address(value, name="address"):
    return parse_data(value, name, size=20)


def parse_hash(value, name="hash"):
    return parse_data(value, name, size=32)


REQUIRED = object()


def param(params, index, parse, default=REQUIRED):
    """Positional parameter `index` parsed by `parse`; absent or null gives `default`."""
    if index < len(params) and params[index] is not None:
        return parse(params[index])
    if default is REQUIRED:
        raise RpcError(INVALID_PARAMS, f"missing parameter {index}")
    return default


def as_is(value):
    return value


def revert_error(output):
    """The error a node answers for a reverted call: code 3, the revert data, and the reason
    decoded when it is an Error(string)."""
    message = "execution reverted"
    if output[:4] == ERROR_STRING_SELECTOR:
        try:
            message += ": " + abi_decode(["string"], output[4:])[0]
        except Exception:  # a malformed reason is still a revert; keep the bare message
            pass
    return RpcError(EXECUTION_REVERTED, message, hexdata(output))


# ----------------------------------------------------------------------------------------------
# The chain.

class DevnetBackend(PyEVMBackend):
    """PyEVMBackend with a chosen chain id: eth-tester hard-codes its own, and py-evm checks
    EIP-155 signatures (and answers CHAINID) with the chain class's id."""

    def __init__(self, chain_id):
        self._chain_id = chain_id
        super().__init__()

    def reset_to_genesis(self, *args, **kwargs):
        super().reset_to_genesis(*args, **kwargs)
        chain_class = type(self.chain).configure(__name__="DevnetChain", chain_id=self._chain_id)
        # Reopen the genesis eth-tester just wrote, now under the configured chain class.
        self.chain = chain_class(self.chain.chaindb.db)


class DevChain:
    """One chain and the JSON-RPC methods over it. Not thread-safe: the server holds a lock."""

    def __init__(self, chain_id):
        self.chain_id = chain_id
        self.tester = EthereumTester(backend=DevnetBackend(chain_id), auto_mine_transactions=True)
        self.accounts = list(self.tester.backend.get_accounts())  # canonical (bytes) addresses
        # Our snapshot ids (as answered by evm_snapshot) -> eth-tester's, in creation order.
        self._snapshots = {}
        self._next_snapshot = 1

    @property
    def chain(self):
        # Reverting to the genesis snapshot replaces the backend's chain object: never cache it.
        return self.tester.backend.chain

    # -- blocks -------------------------------------------------------------------------------

    def head_number(self):
        return self.chain.get_canonical_head().block_number

    def resolve_block_number(self, tag):
        """A block tag or number -> a canonical block number (None if beyond the head)."""
        head = self.head_number()
        if isinstance(tag, dict):  # EIP-1898
            if "blockHash" in tag:
                return self.block_by_hash(parse_hash(tag["blockHash"], "blockHash")).number
            tag = tag.get("blockNumber", "latest")
        # With automine nothing is ever pending, and everything mined is final.
        if tag in ("latest", "pending", "safe", "finalized"):
            return head
        if tag == "earliest":
            return 0
        number = parse_quantity(tag, "block number")
        return number if number <= head else None

    def header_for(self, tag):
        number = self.resolve_block_number(tag)
        if number is None:
            raise RpcError(SERVER_ERROR, "header not found")
        return self.chain.get_canonical_block_header_by_number(number)

    def block_by_hash(self, block_hash):
        """The canonical block with this hash; blocks a revert orphaned are not found."""
        try:
            header = self.chain.get_block_header_by_hash(block_hash)
        except HeaderNotFound:
            raise RpcError(SERVER_ERROR, "unknown block") from None
        if not self.is_canonical(header.block_number, header.hash):
            raise RpcError(SERVER_ERROR, "unknown block")
        return self.chain.get_block_by_header(header)

    def is_canonical(self, number, block_hash):
        # A revert moves the head back but leaves py-evm's number -> hash index above it until
        # new blocks overwrite it: whatever is above the head is not part of the chain.
        if number > self.head_number():
            return False
        return self.chain.get_canonical_block_header_by_number(number).hash == block_hash

    def format_block(self, block, full_transactions):
        header = block.header
        if full_transactions:
            transactions = [self.format_transaction(block, tx, i) for i, tx in enumerate(block.transactions)]
        else:
            transactions = [hexdata(tx.hash) for tx in block.transactions]
        return {
            "number": quantity(header.block_number),
            "hash": hexdata(header.hash),
            "parentHash": hexdata(header.parent_hash),
            "nonce": hexdata(header.nonce),
            "sha3Uncles": hexdata(header.uncles_hash),
            "logsBloom": bloom_hex(header.bloom),
            "transactionsRoot": hexdata(header.transaction_root),
            "stateRoot": hexdata(header.state_root),
            "receiptsRoot": hexdata(header.receipt_root),
            "miner": to_checksum_address(header.coinbase),
            "difficulty": quantity(header.difficulty),
            "extraData": hexdata(header.extra_data),
            "size": quantity(len(rlp.encode(block))),
            "gasLimit": quantity(header.gas_limit),
            "gasUsed": quantity(header.gas_used),
            "timestamp": quantity(header.timestamp),
            "mixHash": hexdata(header.mix_hash),
            "baseFeePerGas": quantity(header.base_fee_per_gas),
            "withdrawalsRoot": hexdata(header.withdrawals_root),
            "blobGasUsed": quantity(header.blob_gas_used),
            "excessBlobGas": quantity(header.excess_blob_gas),
            "parentBeaconBlockRoot": hexdata(header.parent_beacon_block_root),
            "requestsHash": hexdata(header.requests_hash),
            "transactions": transactions,
            "uncles": [],
            "withdrawals": [
                {
                    "index": quantity(w.index),
                    "validatorIndex": quantity(w.validator_index),
                    "address": to_checksum_address(w.address),
                    "amount": quantity(w.amount),
                }
                for w in block.withdrawals
            ],
        }

    # -- transactions and receipts ---------------------------------------------------------------

    def find_transaction(self, tx_hash):
        """(block, index) of a transaction in the canonical chain, or None."""
        try:
            number, index = self.chain.chaindb.get_transaction_index(tx_hash)
        except TransactionNotFound:
            return None
        # The lookup can outlive a revert; trust it only if the canonical block agrees.
        if number > self.head_number():
            return None
        block = self.chain.get_canonical_block_by_number(number)
        if index < len(block.transactions) and block.transactions[index].hash == tx_hash:
            return block, index
        return None

    def format_transaction(self, block, tx, index):
        out = {
            "hash": hexdata(tx.hash),
            "nonce": quantity(tx.nonce),
            "blockHash": hexdata(block.hash),
            "blockNumber": quantity(block.number),
            "transactionIndex": quantity(index),
            "from": to_checksum_address(tx.sender),
            "to": address_or_none(tx.to),
            "value": quantity(tx.value),
            "gas": quantity(tx.gas),
            "input": hexdata(tx.data),
            "r": quantity(tx.r),
            "s": quantity(tx.s),
        }
        if isinstance(tx, TypedTransaction):
            out.update(
                type=quantity(tx.type_id),
                chainId=quantity(tx.chain_id),
                accessList=[
                    {"address": to_checksum_address(address), "storageKeys": [hash32(slot) for slot in slots]}
                    for address, slots in tx.access_list
                ],
                v=quantity(tx.y_parity),
                yParity=quantity(tx.y_parity),
                gasPrice=quantity(effective_gas_price(tx, block.header)),
            )
            if tx.type_id == 2:
                out.update(
                    maxFeePerGas=quantity(tx.max_fee_per_gas),
                    maxPriorityFeePerGas=quantity(tx.max_priority_fee_per_gas),
                )
        else:
            out.update(type="0x0", gasPrice=quantity(tx.gas_price), v=quantity(tx.v))
            if tx.v >= 35:  # EIP-155: v = chain_id * 2 + 35 + parity
                out["chainId"] = quantity((tx.v - 35) // 2)
        return out

    def block_logs(self, block, receipts=None):
        """Every log of a block, numbered across the block as nodes number them."""
        receipts = receipts if receipts is not None else block.get_receipts(self.chain.chaindb)
        logs = []
        for tx_index, (tx, receipt) in enumerate(zip(block.transactions, receipts)):
            for log in receipt.logs:
                logs.append({
                    "address": to_checksum_address(log.address),
                    "topics": [hash32(topic) for topic in log.topics],
                    "data": hexdata(log.data),
                    "blockHash": hexdata(block.hash),
                    "blockNumber": quantity(block.number),
                    "blockTimestamp": quantity(block.header.timestamp),
                    "transactionHash": hexdata(tx.hash),
                    "transactionIndex": quantity(tx_index),
                    "logIndex": quantity(len(logs)),
                    "removed": False,
                })
        return logs

    def format_receipt(self, block, index, receipts=None):
        receipts = receipts if receipts is not None else block.get_receipts(self.chain.chaindb)
        tx, receipt = block.transactions[index], receipts[index]
        previous_cumulative = receipts[index - 1].gas_used if index > 0 else 0
        tx_hash = hexdata(tx.hash)
        return {
            "transactionHash": tx_hash,
            "transactionIndex": quantity(index),
            "blockHash": hexdata(block.hash),
            "blockNumber": quantity(block.number),
            "from": to_checksum_address(tx.sender),
            "to": address_or_none(tx.to),
            "contractAddress": (
                None if tx.to else to_checksum_address(generate_contract_address(tx.sender, tx.nonce))
            ),
            "cumulativeGasUsed": quantity(receipt.gas_used),
            "gasUsed": quantity(receipt.gas_used - previous_cumulative),
            "effectiveGasPrice": quantity(effective_gas_price(tx, block.header)),
            "logs": [log for log in self.block_logs(block, receipts) if log["transactionHash"] == tx_hash],
            "logsBloom": bloom_hex(receipt.bloom),
            "type": quantity(tx.type_id if isinstance(tx, TypedTransaction) else 0),
            "status": "0x1" if receipt.state_root == b"\x01" else "0x0",
        }

    def send_raw_transaction(self, raw):
        # A typed transaction starts with its type (0x00-0x7f), a legacy one with an RLP list.
        tx_type = raw[0] if raw and raw[0] <= 0x7F else 0
        if tx_type not in SUPPORTED_TX_TYPES:
            raise RpcError(SERVER_ERROR, f"transaction type {tx_type} not supported")
        try:
            tx = self.chain.get_vm().get_transaction_builder().decode(raw)
        except (rlp.DecodingError, EvmValidationError, ValueError) as error:
            raise RpcError(SERVER_ERROR, f"invalid transaction: {error}") from None
        # py-evm does not compare a typed transaction's chain id with its own, and takes
        # unprotected legacy ones: refuse both, as a node does.
        if isinstance(tx, TypedTransaction):
            signed_for = tx.chain_id
        else:
            signed_for = (tx.v - 35) // 2 if tx.v >= 35 else None
        if signed_for is None:
            raise RpcError(SERVER_ERROR, "only replay-protected (EIP-155) transactions allowed over RPC")
        if signed_for != self.chain_id:
            raise RpcError(SERVER_ERROR, f"invalid chain id {signed_for} (this chain is {self.chain_id})")
        return self._apply(lambda: self.tester.send_raw_transaction(hexdata(raw)))

    def send_transaction(self, request):
        """eth_sendTransaction for eth-tester's funded accounts, whose keys it holds."""
        sender = parse_address(request.get("from"), "from")
        if sender not in self.accounts:
            raise RpcError(SERVER_ERROR, f"unknown account {to_checksum_address(sender)}")
        tx = {"from": to_checksum_address(sender), "data": hexdata(call_input(request))}
        if request.get("to"):
            tx["to"] = to_checksum_address(parse_address(request["to"], "to"))
        for field, key in (("value", "value"), ("nonce", "nonce"), ("gasPrice", "gas_price"),
                           ("maxFeePerGas", "max_fee_per_gas"),
                           ("maxPriorityFeePerGas", "max_priority_fee_per_gas")):
            if request.get(field) is not None:
                tx[key] = parse_quantity(request[field], field)
        if not any(key in tx for key in ("gas_price", "max_fee_per_gas", "max_priority_fee_per_gas")):
            # What a wallet would fill in; eth-tester's own default (1 gwei) is not always enough.
            tx["max_priority_fee_per_gas"] = SUGGESTED_PRIORITY_FEE
            tx["max_fee_per_gas"] = 2 * self.next_base_fee() + SUGGESTED_PRIORITY_FEE
        if request.get("gas") is not None:
            tx["gas"] = parse_quantity(request["gas"], "gas")
        else:
            tx["gas"] = self.estimate_gas(request, "latest")
        return self._apply(lambda: self.tester.send_transaction(tx))

    def fund(self, address, wei):
        faucet = self.accounts[FAUCET_ACCOUNT_INDEX]
        return self.send_transaction({"from": hexdata(faucet), "to": hexdata(address), "value": quantity(wei)})

    def _apply(self, send):
        """Apply one transaction (it is mined into its own block at once)."""
        self._stamp_pending_block()
        try:
            return send()
        except (EvmValidationError, TesterValidationError, rlp.DecodingError) as error:
            raise RpcError(SERVER_ERROR, str(error)) from None

    def _stamp_pending_block(self):
        # py-evm dates a block when the previous one is mined, so after an idle minute a new
        # transaction would land in a block a minute old. Date it now (and always after its
        # parent), as a node that builds blocks on demand would.
        parent = self.chain.get_canonical_head()
        pending = self.chain.header
        self.chain.header = pending.copy(timestamp=max(parent.timestamp + 1, int(time.time())))

    def mine(self, count):
        for _ in range(count):
            self._stamp_pending_block()
            self.tester.mine_blocks(1)

    # -- execution without a transaction ----------------------------------------------------------

    def _spoofed_call(self, request, header, gas):
        """The request as a fee-less transaction from its sender (the zero address if none)."""
        sender = parse_address(request["from"], "from") if request.get("from") else b"\0" * 20
        vm = self.chain.get_vm(header)
        unsigned = vm.create_unsigned_transaction(
            nonce=vm.state.get_nonce(sender),
            gas_price=0,
            gas=gas,
            to=parse_address(request["to"], "to") if request.get("to") else b"",
            value=parse_quantity(request.get("value") or 0, "value"),
            data=call_input(request),
        )
        return SpoofTransaction(unsigned, from_=sender)

    def call(self, request, tag):
        header = self.header_for(tag)
        gas = min(parse_quantity(request["gas"], "gas"), header.gas_limit) if request.get("gas") else header.gas_limit
        tx = self._spoofed_call(request, header, gas)
        # Runs on the requested block's state in the context of the block that would follow it,
        # with base fee and gas price zero, and is thrown away afterwards.
        with self.chain.get_vm(header).in_costless_state() as state:
            try:
                computation = state.apply_transaction(tx)
            except EvmValidationError as error:
                raise RpcError(SERVER_ERROR, str(error)) from None
        if computation.is_error:
            if isinstance(computation.error, Revert):
                raise revert_error(computation.output)
            raise RpcError(SERVER_ERROR, vm_error_message(computation.error))
        return hexdata(computation.output)

    def estimate_gas(self, request, tag):
        header = self.header_for(tag)
        cap = min(parse_quantity(request["gas"], "gas"), header.gas_limit) if request.get("gas") else header.gas_limit
        tx = self._spoofed_call(request, header, cap)
        try:
            # py-evm's binary search for the least gas that does not fail, in the costless state.
            return self.chain.estimate_gas(tx, header)
        except Revert as error:
            raise revert_error(error.args[0] if error.args else b"") from None
        except VMError as error:
            raise RpcError(SERVER_ERROR, vm_error_message(error)) from None
        except EvmValidationError as error:
            raise RpcError(SERVER_ERROR, str(error)) from None

    # -- logs ------------------------------------------------------------------------------------

    def get_logs(self, criteria):
        if not isinstance(criteria, dict):
            raise RpcError(INVALID_PARAMS, "filter must be an object")
        if criteria.get("blockHash"):
            blocks = [self.block_by_hash(parse_hash(criteria["blockHash"], "blockHash"))]
        else:
            head = self.head_number()
            start = self.resolve_block_number(criteria.get("fromBlock") or "latest")
            end = self.resolve_block_number(criteria.get("toBlock") or "latest")
            end = head if end is None else end
            if start is None or start > end:
                return []
            blocks = (self.chain.get_canonical_block_by_number(n) for n in range(start, end + 1))

        addresses = criteria.get("address")
        if isinstance(addresses, str):
            addresses = [addresses]
        wanted_addresses = {parse_address(a).hex() for a in addresses} if addresses else None

        wanted_topics = []
        for position in criteria.get("topics") or []:
            if position is None:
                wanted_topics.append(None)
            else:
                alternatives = position if isinstance(position, list) else [position]
                wanted_topics.append({parse_hash(t, "topic").hex() for t in alternatives} or None)

        def matches(log):
            if wanted_addresses is not None and log["address"][2:].lower() not in wanted_addresses:
                return False
            if len(wanted_topics) > len(log["topics"]):
                return False
            return all(want is None or topic[2:] in want for want, topic in zip(wanted_topics, log["topics"]))

        return [log for block in blocks for log in self.block_logs(block) if matches(log)]

    # -- fees ------------------------------------------------------------------------------------

    def next_base_fee(self):
        # The pending header carries the base fee the next block will have.
        return self.chain.header.base_fee_per_gas

    def fee_history(self, block_count, newest_tag, percentiles):
        newest = self.resolve_block_number(newest_tag)
        if newest is None:
            raise RpcError(SERVER_ERROR, "header not found")
        block_count = min(block_count, MAX_FEE_HISTORY_BLOCKS, newest + 1)
        oldest = newest - block_count + 1
        base_fees, ratios, rewards = [], [], []
        for number in range(oldest, newest + 1):
            block = self.chain.get_canonical_block_by_number(number)
            base_fees.append(block.header.base_fee_per_gas)
            ratios.append(block.header.gas_used / block.header.gas_limit)
            if percentiles:
                rewards.append([quantity(r) for r in block_rewards(self.chain, block, percentiles)])
        if newest == self.head_number():
            base_fees.append(self.next_base_fee())
        else:
            base_fees.append(self.chain.get_canonical_block_header_by_number(newest + 1).base_fee_per_gas)
        history = {
            "oldestBlock": quantity(oldest),
            "baseFeePerGas": [quantity(fee) for fee in base_fees],
            "gasUsedRatio": ratios,
        }
        if percentiles:
            history["reward"] = rewards
        return history

    # -- snapshots -------------------------------------------------------------------------------

    def snapshot(self):
        snapshot_id = self._next_snapshot
        self._next_snapshot += 1
        self._snapshots[snapshot_id] = self.tester.take_snapshot()
        return quantity(snapshot_id)

    def revert(self, snapshot_id):
        """Revert to a snapshot; like Hardhat, the snapshot and every later one are used up."""
        if snapshot_id not in self._snapshots:
            return False
        self.tester.revert_to_snapshot(self._snapshots[snapshot_id])
        for later in [s for s in self._snapshots if s >= snapshot_id]:
            del self._snapshots[later]
        return True

    # -- account state ---------------------------------------------------------------------------

    def state_at(self, tag):
        return self.chain.get_vm(self.header_for(tag)).state


def bloom_hex(bloom):
    return hexdata(bloom.to_bytes(256, "big"))


def call_input(request):
    """Transaction data: `input` is the current name, `data` the older one; both are accepted."""
    value = request.get("input") if request.get("input") is not None else request.get("data")
    return parse_data(value, "input") if value is not None else b""


def effective_gas_price(tx, header):
    if isinstance(tx, TypedTransaction) and tx.type_id == 2:
        return min(tx.max_fee_per_gas, tx.max_priority_fee_per_gas + header.base_fee_per_gas)
    return tx.gas_price


def vm_error_message(error):
    return str(error) or type(error).__name__


def block_rewards(chain, block, percentiles):
    """The priority fees paid at the given percentiles of the block's gas, as geth answers them
    for eth_feeHistory: transactions sorted by tip, each weighted by the gas it used."""
    receipts = block.get_receipts(chain.chaindb)
    tips, previous = [], 0
    for tx, receipt in zip(block.transactions, receipts):
        tips.append((effective_gas_price(tx, block.header) - block.header.base_fee_per_gas, receipt.gas_used - previous))
        previous = receipt.gas_used
    if not tips:
        return [0 for _ in percentiles]
    tips.sort()
    total = sum(gas for _, gas in tips)
    rewards = []
    for percentile in percentiles:
        threshold, cumulative = total * percentile / 100, 0
        for tip, gas in tips:
            cumulative += gas
            if cumulative >= threshold:
                rewards.append(tip)
                break
        else:
            rewards.append(tips[-1][0])
    return rewards


# ----------------------------------------------------------------------------------------------
# The JSON-RPC methods.

def rpc_methods(dev):
    """Method name -> handler(params list) -> JSON result."""

    def block_by_number(params):
        number = dev.resolve_block_number(param(params, 0, as_is))
        if number is None:
            return None
        return dev.format_block(dev.chain.get_canonical_block_by_number(number), param(params, 1, bool, False))

    def block_by_hash(params):
        try:
            block = dev.block_by_hash(param(params, 0, parse_hash))
        except RpcError:
            return None
        return dev.format_block(block, param(params, 1, bool, False))

    def transaction_by_hash(params):
        found = dev.find_transaction(param(params, 0, parse_hash))
        return dev.format_transaction(found[0], found[0].transactions[found[1]], found[1]) if found else None

    def receipt(params):
        found = dev.find_transaction(param(params, 0, parse_hash))
        return dev.format_receipt(*found) if found else None

    def block_receipts(params):
        number = dev.resolve_block_number(param(params, 0, as_is))
        if number is None:
            return None
        block = dev.chain.get_canonical_block_by_number(number)
        receipts = block.get_receipts(dev.chain.chaindb)
        return [dev.format_receipt(block, i, receipts) for i in range(len(block.transactions))]

    def tag(params, index):
        return param(params, index, as_is, "latest")

    def request_object(params):
        request = param(params, 0, as_is)
        if not isinstance(request, dict):
            raise RpcError(INVALID_PARAMS, "transaction must be an object")
        return request

    def fee_history(params):
        count = param(params, 0, lambda v: parse_quantity(v, "block count"))
        percentiles = param(params, 2, as_is, [])
        if not isinstance(percentiles, list) or any(not isinstance(p, (int, float)) or not 0 <= p <= 100 for p in percentiles):
            raise RpcError(INVALID_PARAMS, "invalid reward percentiles")
        return dev.fee_history(count, tag(params, 1), percentiles)

    def mine(params):
        dev.mine(param(params, 0, lambda v: parse_quantity(v, "count"), 1))
        return "0x0"

    return {
        "web3_clientVersion": lambda p: "mpc-dvn-devnet/py-evm",
        "net_version": lambda p: str(dev.chain_id),
        "net_listening": lambda p: True,
        "eth_chainId": lambda p: quantity(dev.chain_id),
        "eth_syncing": lambda p: False,
        "eth_accounts": lambda p: [to_checksum_address(a) for a in dev.accounts],
        "eth_blockNumber": lambda p: quantity(dev.head_number()),
        "eth_getBlockByNumber": block_by_number,
        "eth_getBlockByHash": block_by_hash,
        "eth_getTransactionByHash": transaction_by_hash,
        "eth_getTransactionReceipt": receipt,
        "eth_getBlockReceipts": block_receipts,
        "eth_getLogs": lambda p: dev.get_logs(param(p, 0, as_is)),
        "eth_getBalance": lambda p: quantity(dev.state_at(tag(p, 1)).get_balance(param(p, 0, parse_address))),
        "eth_getCode": lambda p: hexdata(dev.state_at(tag(p, 1)).get_code(param(p, 0, parse_address))),
        "eth_getStorageAt": lambda p: hash32(dev.state_at(tag(p, 2)).get_storage(
            param(p, 0, parse_address), param(p, 1, lambda v: parse_quantity(v, "slot")))),
        "eth_getTransactionCount": lambda p: quantity(dev.state_at(tag(p, 1)).get_nonce(param(p, 0, parse_address))),
        "eth_call": lambda p: dev.call(request_object(p), tag(p, 1)),
        "eth_estimateGas": lambda p: quantity(dev.estimate_gas(request_object(p), tag(p, 1))),
        "eth_gasPrice": lambda p: quantity(dev.next_base_fee() + SUGGESTED_PRIORITY_FEE),
        "eth_maxPriorityFeePerGas": lambda p: quantity(SUGGESTED_PRIORITY_FEE),
        "eth_feeHistory": fee_history,
        "eth_sendRawTransaction": lambda p: dev.send_raw_transaction(param(p, 0, lambda v: parse_data(v, "transaction"))),
        "eth_sendTransaction": lambda p: dev.send_transaction(request_object(p)),
        "evm_mine": mine,
        "evm_snapshot": lambda p: dev.snapshot(),
        "evm_revert": lambda p: dev.revert(param(p, 0, lambda v: parse_quantity(v, "snapshot id"))),
        "devnet_fund": lambda p: dev.fund(param(p, 0, parse_address), param(p, 1, lambda v: parse_quantity(v, "amount"))),
    }


# ----------------------------------------------------------------------------------------------
# HTTP.

class RpcServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address, dev, verbose):
        super().__init__(address, RpcHandler)
        self.dev = dev
        self.methods = rpc_methods(dev)
        self.verbose = verbose
        self.offline = False
        # py-evm is not thread-safe, and a batch should see one state: one request at a time.
        self.lock = threading.Lock()

    def handle_body(self, body):
        """A request body -> (HTTP status, response object or None), logging one line if verbose."""
        started = time.monotonic()
        status, response, summary = self._answer(body)
        if self.verbose:
            print(f"{summary} -> {status.value} in {(time.monotonic() - started) * 1000:.1f} ms", file=sys.stderr, flush=True)
        return status, response

    def _answer(self, body):
        try:
            request = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            return HTTPStatus.OK, error_response(None, RpcError(PARSE_ERROR, "parse error")), "unparsable request"
        calls = request if isinstance(request, list) else [request]
        if self.offline and not all(isinstance(c, dict) and c.get("method") == "devnet_setOffline" for c in calls):
            return HTTPStatus.SERVICE_UNAVAILABLE, None, "offline"
        if isinstance(request, list) and not request:
            return HTTPStatus.OK, error_response(None, RpcError(INVALID_REQUEST, "empty batch")), "empty batch"
        with self.lock:
            answered = [self.handle_call(call) for call in calls]
        summary = ", ".join(outcome for _, outcome in answered)
        responses = [response for response, _ in answered if response is not None]  # notifications get none
        if not responses:
            return HTTPStatus.NO_CONTENT, None, summary
        return HTTPStatus.OK, responses if isinstance(request, list) else responses[0], summary

    def handle_call(self, call):
        """One call -> (its response, or None for a notification; a summary for the log)."""
        if not isinstance(call, dict) or not isinstance(call.get("method"), str):
            return error_response(None, RpcError(INVALID_REQUEST, "invalid request")), "invalid request"
        call_id, method, params = call.get("id"), call["method"], call.get("params", [])
        outcome = method
        try:
            if not isinstance(params, list):
                raise RpcError(INVALID_PARAMS, "params must be an array")
            if method == "devnet_setOffline":
                # Here, not in rpc_methods: the flag belongs to the HTTP layer, which enforces it.
                self.offline = param(params, 0, bool)
                result = self.offline
            elif method in self.methods:
                result = self.methods[method](params)
            else:
                raise RpcError(METHOD_NOT_FOUND, f"the method {method} does not exist/is not available")
            response = {"jsonrpc": "2.0", "id": call_id, "result": result}
        except RpcError as error:
            outcome = f"{method} (error {error.code}: {error.message})"
            response = error_response(call_id, error)
        except Exception as error:  # a bug or an unexpected py-evm failure: answer, keep serving
            traceback.print_exc()
            outcome = f"{method} (internal error: {error!r})"
            response = error_response(call_id, RpcError(INTERNAL_ERROR, f"internal error: {error}"))
        return (response if "id" in call else None), outcome


def error_response(call_id, error):
    return {"jsonrpc": "2.0", "id": call_id, "error": error.to_json()}


class RpcHandler(BaseHTTPRequestHandler):
    # Keep-alive, as HTTP clients with connection pools (reqwest under alloy) expect.
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        status, response = self.server.handle_body(self.rfile.read(length))
        if status == HTTPStatus.SERVICE_UNAVAILABLE:
            self.reply(status, b"devnet endpoint offline (devnet_setOffline)\n", "text/plain")
        elif response is None:
            self.reply(status, b"", "application/json")
        else:
            self.reply(status, json.dumps(response).encode(), "application/json")

    def do_GET(self):
        self.reply(HTTPStatus.METHOD_NOT_ALLOWED, b"JSON-RPC over POST only\n", "text/plain")

    def reply(self, status, body, content_type):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):
        # RpcServer.handle_body logs one line per request when --verbose.
        pass


def produce_blocks(server, interval):
    """Mine an empty block every `interval` seconds, under the server's lock. An endpoint taken
    offline keeps its chain growing, as a real chain does behind a broken RPC node."""
    while True:
        time.sleep(interval)
        with server.lock:
            server.dev.mine(1)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--chain-id", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--verbose", action="store_true", help="log one line per JSON-RPC call to stderr")
    parser.add_argument("--block-time", type=float, default=0, metavar="SECONDS",
                        help="also mine an empty block every SECONDS, as a live chain does (0: only on transactions)")
    args = parser.parse_args()
    if args.block_time < 0:
        parser.error("--block-time: must be 0 or more seconds")

    try:
        server = RpcServer((args.host, args.port), DevChain(args.chain_id), args.verbose)
    except OSError as error:
        sys.exit(f"cannot listen on {args.host}:{args.port}: {error.strerror}")
    print(f"chain {args.chain_id} listening on http://{args.host}:{args.port}", file=sys.stderr, flush=True)
    if args.block_time:
        threading.Thread(target=produce_blocks, args=(server, args.block_time), daemon=True).start()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
