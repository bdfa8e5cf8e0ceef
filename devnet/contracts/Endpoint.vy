# pragma version 0.4.3
# pragma evm-version prague
"""
@title EndpointV2 (send side) for the devnet
@notice What LayerZero V2's EndpointV2 does on send: per-path outbound nonces (sender, dstEid,
        receiver), the packet GUID, a call into the send library (which emits DVNFeePaid) and
        then `PacketSent(bytes encodedPayload, bytes options, address sendLibrary)`.
        Simplified: `send` takes the destination, receiver, message and options directly
        instead of MessagingParams, charges no fee, and every path uses one send library.
        `testEmitPacketSent` is a TEST HOOK that emits arbitrary (malformed) packets.
"""

MAX_DVNS: constant(uint256) = 16
MAX_MESSAGE: constant(uint256) = 10000
MAX_OPTIONS: constant(uint256) = 1024
MAX_ENCODED: constant(uint256) = 81 + 32 + MAX_MESSAGE

struct Packet:
    nonce: uint64
    srcEid: uint32
    sender: address
    dstEid: uint32
    receiver: bytes32
    guid: bytes32
    message: Bytes[MAX_MESSAGE]

interface SendLibrary:
    def send(_packet: Packet, _options: Bytes[MAX_OPTIONS]) -> Bytes[MAX_ENCODED]: nonpayable
    def testEmitDVNFeePaid(_requiredDVNs: DynArray[address, MAX_DVNS], _optionalDVNs: DynArray[address, MAX_DVNS], _fees: DynArray[uint256, 2 * MAX_DVNS]): nonpayable

event PacketSent:
    encodedPayload: Bytes[MAX_ENCODED]
    options: Bytes[MAX_OPTIONS]
    sendLibrary: address

eid: public(immutable(uint32))
owner: public(address)
sendLibrary: public(address)
outboundNonce: public(HashMap[address, HashMap[uint32, HashMap[bytes32, uint64]]])


@deploy
def __init__(_eid: uint32):
    eid = _eid
    self.owner = msg.sender


@external
def setSendLibrary(_library: address):
    assert msg.sender == self.owner, "Endpoint: only owner"
    self.sendLibrary = _library


@external
def send(_dstEid: uint32, _receiver: bytes32, _message: Bytes[MAX_MESSAGE], _options: Bytes[MAX_OPTIONS]) -> (bytes32, uint64):
    """
    @notice Send `_message` from the caller to `_receiver` on `_dstEid`.
    @return the packet's GUID and nonce
    """
    library: address = self.sendLibrary
    assert library != empty(address), "Endpoint: no send library"

    nonce: uint64 = self.outboundNonce[msg.sender][_dstEid][_receiver] + 1
    self.outboundNonce[msg.sender][_dstEid][_receiver] = nonce

    sender: bytes32 = convert(convert(msg.sender, uint256), bytes32)
    # GUID.generate: keccak256(abi.encodePacked(nonce, srcEid, sender, dstEid, receiver))
    guid: bytes32 = keccak256(concat(convert(nonce, bytes8), convert(eid, bytes4), sender, convert(_dstEid, bytes4), _receiver))

    packet: Packet = Packet(nonce=nonce, srcEid=eid, sender=msg.sender, dstEid=_dstEid, receiver=_receiver, guid=guid, message=_message)
    encoded: Bytes[MAX_ENCODED] = extcall SendLibrary(library).send(packet, _options)
    log PacketSent(encodedPayload=encoded, options=_options, sendLibrary=library)
    return guid, nonce


@external
def testEmitPacketSent(
    _encodedPayload: Bytes[MAX_ENCODED],
    _options: Bytes[MAX_OPTIONS],
    _sendLibrary: address,
    _feeLibrary: address,
    _requiredDVNs: DynArray[address, MAX_DVNS],
    _optionalDVNs: DynArray[address, MAX_DVNS],
    _fees: DynArray[uint256, 2 * MAX_DVNS],
):
    """
    @notice TEST HOOK (owner only): emit PacketSent exactly as given, naming `_sendLibrary`,
            preceded in the same transaction by DVNFeePaid from `_feeLibrary` (skipped if it
            is the zero address). Nothing is checked and no nonce is consumed: this is how
            tests produce malformed packets for the relayer to reject.
    """
    assert msg.sender == self.owner, "Endpoint: only owner"
    if _feeLibrary != empty(address):
        extcall SendLibrary(_feeLibrary).testEmitDVNFeePaid(_requiredDVNs, _optionalDVNs, _fees)
    log PacketSent(encodedPayload=_encodedPayload, options=_options, sendLibrary=_sendLibrary)
