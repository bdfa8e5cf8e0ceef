# pragma version 0.4.3
# pragma evm-version prague
"""
@title ReceiveUln302 for the devnet
@notice The part of LayerZero V2's ReceiveUln302 that DVNs use: `verify` (selector 0x0223536e)
        records hashLookup[keccak256(header)][payloadHash][msg.sender] and emits
        `PayloadVerified(address dvn, bytes header, uint256 confirmations, bytes32 proofHash)`;
        `hashLookup` and `getUlnConfig` read it back with the real ABIs. As in the real
        library, `verify` checks nothing about the header (commitVerification does that).
        Not modelled: commitVerification and the destination endpoint.
        Config resolution: a path (oapp, srcEid) uses its own config if set, else the default.
"""

MAX_DVNS: constant(uint256) = 16
# The real library takes a header of any length; 1024 bytes leaves room for malformed ones.
MAX_HEADER: constant(uint256) = 1024

struct UlnConfig:
    confirmations: uint64
    requiredDVNCount: uint8
    optionalDVNCount: uint8
    optionalDVNThreshold: uint8
    requiredDVNs: DynArray[address, MAX_DVNS]
    optionalDVNs: DynArray[address, MAX_DVNS]

struct Verification:
    submitted: bool
    confirmations: uint64

event PayloadVerified:
    dvn: address
    header: Bytes[MAX_HEADER]
    confirmations: uint256
    proofHash: bytes32

event DefaultUlnConfigSet:
    eid: uint32
    config: UlnConfig

event UlnConfigSet:
    oapp: address
    eid: uint32
    config: UlnConfig

owner: public(address)

_lookup: HashMap[bytes32, HashMap[bytes32, HashMap[address, Verification]]]
_defaultConfigs: HashMap[uint32, UlnConfig]
_oappConfigs: HashMap[address, HashMap[uint32, UlnConfig]]
_hasOappConfig: HashMap[address, HashMap[uint32, bool]]


@deploy
def __init__():
    self.owner = msg.sender


@external
def verify(_packetHeader: Bytes[MAX_HEADER], _payloadHash: bytes32, _confirmations: uint64):
    self._lookup[keccak256(_packetHeader)][_payloadHash][msg.sender] = Verification(submitted=True, confirmations=_confirmations)
    log PayloadVerified(dvn=msg.sender, header=_packetHeader, confirmations=convert(_confirmations, uint256), proofHash=_payloadHash)


@external
@view
def hashLookup(_headerHash: bytes32, _payloadHash: bytes32, _dvn: address) -> (bool, uint64):
    verification: Verification = self._lookup[_headerHash][_payloadHash][_dvn]
    return verification.submitted, verification.confirmations


@external
@view
def getUlnConfig(_oapp: address, _remoteEid: uint32) -> UlnConfig:
    if self._hasOappConfig[_oapp][_remoteEid]:
        return self._oappConfigs[_oapp][_remoteEid]
    return self._defaultConfigs[_remoteEid]


@external
def setDefaultUlnConfig(_eid: uint32, _config: UlnConfig):
    assert msg.sender == self.owner, "ReceiveUln302: only owner"
    self._assert_valid(_config)
    self._defaultConfigs[_eid] = _config
    log DefaultUlnConfigSet(eid=_eid, config=_config)


@external
def setUlnConfig(_oapp: address, _eid: uint32, _config: UlnConfig):
    assert msg.sender == self.owner, "ReceiveUln302: only owner"
    self._assert_valid(_config)
    self._oappConfigs[_oapp][_eid] = _config
    self._hasOappConfig[_oapp][_eid] = True
    log UlnConfigSet(oapp=_oapp, eid=_eid, config=_config)


@internal
@pure
def _assert_valid(_config: UlnConfig):
    # Same invariants as the send library (UlnBase._assertUlnConfig).
    assert convert(_config.requiredDVNCount, uint256) == len(_config.requiredDVNs), "UlnConfig: required count"
    assert convert(_config.optionalDVNCount, uint256) == len(_config.optionalDVNs), "UlnConfig: optional count"
    assert _config.optionalDVNThreshold <= _config.optionalDVNCount, "UlnConfig: threshold"
    assert _config.optionalDVNCount == 0 or _config.optionalDVNThreshold > 0, "UlnConfig: threshold"
    assert _config.requiredDVNCount > 0 or _config.optionalDVNThreshold > 0, "UlnConfig: no DVN"
    last: uint160 = 0
    for dvn: address in _config.requiredDVNs:
        assert convert(dvn, uint160) > last, "UlnConfig: DVNs unsorted or duplicated"
        last = convert(dvn, uint160)
    last = 0
    for dvn: address in _config.optionalDVNs:
        assert convert(dvn, uint160) > last, "UlnConfig: DVNs unsorted or duplicated"
        last = convert(dvn, uint160)
