# pragma version 0.4.3
# pragma evm-version prague
"""
@title SendUln302 for the devnet
@notice The send library half of LayerZero V2's ULN 302: encodes PacketV1, looks up the path's
        ULN config and emits `DVNFeePaid(address[],address[],uint256[])` with the same signature
        and argument order as SendUlnBase. The endpoint emits `PacketSent` right after it, in
        the same transaction, as EndpointV2 does.
        Fees are bookkeeping only: each DVN's fee is a number set by the owner and reported in
        the event; no value moves and no `assignJob` call is made.
        Config resolution is simplified: a path (oapp, dstEid) uses its own config if one was
        set, otherwise the default for dstEid (the real UlnBase merges field by field).
"""

MAX_DVNS: constant(uint256) = 16
MAX_MESSAGE: constant(uint256) = 10000
MAX_OPTIONS: constant(uint256) = 1024
PACKET_HEADER_SIZE: constant(uint256) = 81
MAX_ENCODED: constant(uint256) = PACKET_HEADER_SIZE + 32 + MAX_MESSAGE
PACKET_VERSION: constant(bytes1) = 0x01

struct Packet:
    nonce: uint64
    srcEid: uint32
    sender: address
    dstEid: uint32
    receiver: bytes32
    guid: bytes32
    message: Bytes[MAX_MESSAGE]

struct UlnConfig:
    confirmations: uint64
    requiredDVNCount: uint8
    optionalDVNCount: uint8
    optionalDVNThreshold: uint8
    requiredDVNs: DynArray[address, MAX_DVNS]
    optionalDVNs: DynArray[address, MAX_DVNS]

event DVNFeePaid:
    requiredDVNs: DynArray[address, MAX_DVNS]
    optionalDVNs: DynArray[address, MAX_DVNS]
    fees: DynArray[uint256, 2 * MAX_DVNS]

event DefaultUlnConfigSet:
    eid: uint32
    config: UlnConfig

event UlnConfigSet:
    oapp: address
    eid: uint32
    config: UlnConfig

endpoint: public(immutable(address))
owner: public(address)
dvnFee: public(HashMap[address, uint256])

_defaultConfigs: HashMap[uint32, UlnConfig]
_oappConfigs: HashMap[address, HashMap[uint32, UlnConfig]]
_hasOappConfig: HashMap[address, HashMap[uint32, bool]]


@deploy
def __init__(_endpoint: address):
    endpoint = _endpoint
    self.owner = msg.sender


@external
def send(_packet: Packet, _options: Bytes[MAX_OPTIONS]) -> Bytes[MAX_ENCODED]:
    """
    @notice Called by the endpoint for every packet; returns the encoded packet for PacketSent.
    """
    assert msg.sender == endpoint, "SendUln302: only endpoint"
    config: UlnConfig = self._get_uln_config(_packet.sender, _packet.dstEid)
    assert config.requiredDVNCount > 0 or config.optionalDVNThreshold > 0, "SendUln302: no ULN config for path"

    fees: DynArray[uint256, 2 * MAX_DVNS] = []
    for dvn: address in config.requiredDVNs:
        fees.append(self.dvnFee[dvn])
    for dvn: address in config.optionalDVNs:
        fees.append(self.dvnFee[dvn])
    log DVNFeePaid(requiredDVNs=config.requiredDVNs, optionalDVNs=config.optionalDVNs, fees=fees)

    # PacketV1: header (version, nonce, srcEid, sender, dstEid, receiver) ++ payload (guid, message)
    return concat(
        PACKET_VERSION,
        convert(_packet.nonce, bytes8),
        convert(_packet.srcEid, bytes4),
        convert(convert(_packet.sender, uint256), bytes32),
        convert(_packet.dstEid, bytes4),
        _packet.receiver,
        _packet.guid,
        _packet.message,
    )


@external
def testEmitDVNFeePaid(_requiredDVNs: DynArray[address, MAX_DVNS], _optionalDVNs: DynArray[address, MAX_DVNS], _fees: DynArray[uint256, 2 * MAX_DVNS]):
    """
    @notice TEST HOOK: emit DVNFeePaid as given, for the endpoint's malformed-packet hook.
    """
    assert msg.sender == endpoint, "SendUln302: only endpoint"
    log DVNFeePaid(requiredDVNs=_requiredDVNs, optionalDVNs=_optionalDVNs, fees=_fees)


@external
@view
def getUlnConfig(_oapp: address, _remoteEid: uint32) -> UlnConfig:
    return self._get_uln_config(_oapp, _remoteEid)


@external
def setDefaultUlnConfig(_eid: uint32, _config: UlnConfig):
    assert msg.sender == self.owner, "SendUln302: only owner"
    self._assert_valid(_config)
    self._defaultConfigs[_eid] = _config
    log DefaultUlnConfigSet(eid=_eid, config=_config)


@external
def setUlnConfig(_oapp: address, _eid: uint32, _config: UlnConfig):
    assert msg.sender == self.owner, "SendUln302: only owner"
    self._assert_valid(_config)
    self._oappConfigs[_oapp][_eid] = _config
    self._hasOappConfig[_oapp][_eid] = True
    log UlnConfigSet(oapp=_oapp, eid=_eid, config=_config)


@external
def setDVNFee(_dvn: address, _fee: uint256):
    assert msg.sender == self.owner, "SendUln302: only owner"
    self.dvnFee[_dvn] = _fee


@internal
@view
def _get_uln_config(_oapp: address, _eid: uint32) -> UlnConfig:
    if self._hasOappConfig[_oapp][_eid]:
        return self._oappConfigs[_oapp][_eid]
    return self._defaultConfigs[_eid]


@internal
@pure
def _assert_valid(_config: UlnConfig):
    # The invariants UlnBase._assertUlnConfig enforces: counts match the lists, DVNs are sorted
    # without duplicates, and the optional threshold is reachable.
    assert convert(_config.requiredDVNCount, uint256) == len(_config.requiredDVNs), "UlnConfig: required count"
    assert convert(_config.optionalDVNCount, uint256) == len(_config.optionalDVNs), "UlnConfig: optional count"
    assert _config.optionalDVNThreshold <= _config.optionalDVNCount, "UlnConfig: threshold"
    assert _config.optionalDVNCount == 0 or _config.optionalDVNThreshold > 0, "UlnConfig: threshold"
    assert _config.requiredDVNCount > 0 or _config.optionalDVNThreshold > 0, "UlnConfig: no DVN"
    self._assert_sorted(_config.requiredDVNs)
    self._assert_sorted(_config.optionalDVNs)


@internal
@pure
def _assert_sorted(_dvns: DynArray[address, MAX_DVNS]):
    last: uint160 = 0
    for dvn: address in _dvns:
        assert convert(dvn, uint160) > last, "UlnConfig: DVNs unsorted or duplicated"
        last = convert(dvn, uint160)
