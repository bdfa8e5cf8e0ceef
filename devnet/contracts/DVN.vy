# pragma version 0.4.3
# pragma evm-version prague
"""
@title DVN for the devnet
@notice LayerZero V2's DVN worker contract (DVN.sol + MultiSig.sol), reduced to what a relayer
        touches: `execute` with the real ABI (selector 0xb143044b), the real signing hash
        (`hashCallData`), the real multisig rules and the real per-item failure events. An item
        that fails a check does not revert the transaction; it is skipped (wrong vid, expired)
        or reported (`VerifySignaturesFailed`, `HashAlreadyUsed`, `ExecuteFailed`) and the next
        item runs.
        Not modelled: fees and job assignment, allow/deny lists, price feeds, ULNv2.
        Devnet-only addition: `devnetSetSigners`, an owner shortcut to install the signer set
        that the relayers' keys define once they exist (the real contract changes signers only
        through a quorum-signed `setSigner` via `execute`, which works here too).
        Input bounds (MAX_*) exist because Vyper needs them; the real contract has none.
"""

MAX_SIGNERS: constant(uint256) = 16
MAX_CALLDATA: constant(uint256) = 2048
MAX_SIGNATURES: constant(uint256) = MAX_SIGNERS * 65
MAX_BATCH: constant(uint256) = 32
MAX_RETURNDATA: constant(uint256) = 1024

# keccak256("ADMIN_ROLE"), as in Worker.sol.
ADMIN_ROLE: public(constant(bytes32)) = keccak256("ADMIN_ROLE")

# Selectors whose replay cannot change state, so the real DVN does not spend a used-hash slot on
# them (DVN._shouldCheckHash): ReceiveUlnE2.verify and ULNv2 updateHash.
VERIFY_SELECTOR: constant(bytes4) = 0x0223536e
UPDATE_HASH_SELECTOR: constant(bytes4) = 0x704316e5

# Half the secp256k1 group order: OpenZeppelin's ECDSA.tryRecover rejects s above it (malleable).
SECP256K1_HALF_N: constant(uint256) = 57896044618658097711785492504343953926418782139537452191302581570759080747168

# MultiSig.Errors
ERR_NONE: constant(uint8) = 0
ERR_SIGNATURE: constant(uint8) = 1
ERR_DUPLICATED_SIGNER: constant(uint8) = 2
ERR_SIGNER_NOT_IN_COMMITTEE: constant(uint8) = 3

struct ExecuteParam:
    vid: uint32
    target: address
    callData: Bytes[MAX_CALLDATA]
    expiration: uint256
    signatures: Bytes[MAX_SIGNATURES]

event VerifySignaturesFailed:
    idx: uint256

event ExecuteFailed:
    _index: uint256
    _data: Bytes[MAX_RETURNDATA]

event HashAlreadyUsed:
    param: ExecuteParam
    _hash: bytes32

event UpdateSigner:
    _signer: address
    _active: bool

event UpdateQuorum:
    _quorum: uint64

event RoleGranted:
    role: indexed(bytes32)
    account: indexed(address)
    sender: indexed(address)

event RoleRevoked:
    role: indexed(bytes32)
    account: indexed(address)
    sender: indexed(address)

vid: public(immutable(uint32))
owner: public(address)
quorum: public(uint64)
usedHashes: public(HashMap[bytes32, bool])

# An enumerable set: `_signers` keeps the members, `isSigner` answers membership.
_signers: DynArray[address, MAX_SIGNERS]
isSigner: public(HashMap[address, bool])
_admins: HashMap[address, bool]


@deploy
def __init__(_vid: uint32, _signers: DynArray[address, MAX_SIGNERS], _quorum: uint64, _admins: DynArray[address, MAX_SIGNERS]):
    vid = _vid
    self.owner = msg.sender
    for signer: address in _signers:
        self._add_signer(signer)
    self._set_quorum(_quorum)
    for admin: address in _admins:
        self._admins[admin] = True
        log RoleGranted(role=ADMIN_ROLE, account=admin, sender=msg.sender)


# ----------------------------------------------------------------- execute

@external
def execute(_params: DynArray[ExecuteParam, MAX_BATCH]):
    """
    @notice Run each signed instruction in order; a failing one is reported and skipped.
    """
    assert self._admins[msg.sender], "DVN: caller is not an admin"
    for i: uint256 in range(len(_params), bound=MAX_BATCH):
        param: ExecuteParam = _params[i]
        if param.vid != vid:
            continue
        if param.expiration <= block.timestamp:
            continue

        hash: bytes32 = self._hash_call_data(param.vid, param.target, param.callData, param.expiration)
        ok: bool = False
        reason: uint8 = ERR_NONE
        ok, reason = self._verify_signatures(hash, param.signatures)
        if not ok:
            log VerifySignaturesFailed(idx=i)
            continue

        check_hash: bool = self._should_check_hash(param.callData)
        if check_hash:
            if self.usedHashes[hash]:
                log HashAlreadyUsed(param=param, _hash=hash)
                continue
            # Marked before the call so that the call cannot re-enter with the same item.
            self.usedHashes[hash] = True

        success: bool = False
        returned: Bytes[MAX_RETURNDATA] = b""
        success, returned = raw_call(param.target, param.callData, max_outsize=MAX_RETURNDATA, revert_on_failure=False)
        if not success:
            if check_hash:
                # A failed instruction may be signed again and retried.
                self.usedHashes[hash] = False
            log ExecuteFailed(_index=i, _data=returned)


@external
@pure
def hashCallData(_vid: uint32, _target: address, _callData: Bytes[MAX_CALLDATA], _expiration: uint256) -> bytes32:
    return self._hash_call_data(_vid, _target, _callData, _expiration)


@external
@view
def verifySignatures(_hash: bytes32, _signatures: Bytes[MAX_SIGNATURES]) -> (bool, uint8):
    return self._verify_signatures(_hash, _signatures)


# ----------------------------------------------------------------- multisig administration

@external
def setSigner(_signer: address, _active: bool):
    """
    @notice Only through `execute` (quorum-signed), as in the real DVN (selector 0x31cb6105).
    """
    assert msg.sender == self, "DVN: only self"
    if _active:
        self._add_signer(_signer)
    else:
        self._remove_signer(_signer)
    assert len(self._signers) >= convert(self.quorum, uint256), "MultiSig: signers fewer than quorum"


@external
def setQuorum(_quorum: uint64):
    """
    @notice Only through `execute` (quorum-signed), as in the real DVN (selector 0x8585c945).
    """
    assert msg.sender == self, "DVN: only self"
    self._set_quorum(_quorum)


@external
def devnetSetSigners(_signers: DynArray[address, MAX_SIGNERS], _quorum: uint64):
    """
    @notice DEVNET ONLY: replace the whole signer set and the quorum (owner only).
    """
    assert msg.sender == self.owner, "DVN: only owner"
    for signer: address in self._signers:
        self.isSigner[signer] = False
        log UpdateSigner(_signer=signer, _active=False)
    self._signers = []
    for signer: address in _signers:
        self._add_signer(signer)
    self._set_quorum(_quorum)


@external
@view
def getSigners() -> DynArray[address, MAX_SIGNERS]:
    return self._signers


@external
@view
def signerSize() -> uint256:
    return len(self._signers)


# ----------------------------------------------------------------- roles

@external
@view
def hasRole(_role: bytes32, _account: address) -> bool:
    return _role == ADMIN_ROLE and self._admins[_account]


@external
def grantRole(_role: bytes32, _account: address):
    """
    @notice Admins grant the admin role (the only role modelled); the owner may bootstrap it.
    """
    self._check_role_change(_role)
    if not self._admins[_account]:
        self._admins[_account] = True
        log RoleGranted(role=_role, account=_account, sender=msg.sender)


@external
def revokeRole(_role: bytes32, _account: address):
    self._check_role_change(_role)
    if self._admins[_account]:
        self._admins[_account] = False
        log RoleRevoked(role=_role, account=_account, sender=msg.sender)


# ----------------------------------------------------------------- internals

@internal
@pure
def _hash_call_data(_vid: uint32, _target: address, _callData: Bytes[MAX_CALLDATA], _expiration: uint256) -> bytes32:
    # keccak256(abi.encodePacked(uint32 vid, address target, uint256 expiration, bytes callData))
    return keccak256(concat(convert(_vid, bytes4), convert(_target, bytes20), convert(_expiration, bytes32), _callData))


@internal
@view
def _verify_signatures(_hash: bytes32, _signatures: Bytes[MAX_SIGNATURES]) -> (bool, uint8):
    # MultiSig.verifySignatures: exactly `quorum` signatures over the EIP-191 digest of the hash,
    # from committee members in strictly ascending address order (which also rules out duplicates).
    if len(_signatures) != convert(self.quorum, uint256) * 65:
        return False, ERR_SIGNATURE
    digest: bytes32 = keccak256(concat(b"\x19Ethereum Signed Message:\n32", _hash))
    last_signer: address = empty(address)
    for i: uint256 in range(convert(self.quorum, uint256), bound=MAX_SIGNERS):
        offset: uint256 = i * 65
        r: uint256 = convert(extract32(_signatures, offset), uint256)
        s: uint256 = convert(extract32(_signatures, offset + 32), uint256)
        v: uint256 = convert(slice(_signatures, offset + 64, 1), uint256)
        if s > SECP256K1_HALF_N:
            return False, ERR_SIGNATURE
        signer: address = ecrecover(digest, v, r, s)
        if signer == empty(address):
            return False, ERR_SIGNATURE
        if convert(signer, uint160) <= convert(last_signer, uint160):
            return False, ERR_DUPLICATED_SIGNER
        if not self.isSigner[signer]:
            return False, ERR_SIGNER_NOT_IN_COMMITTEE
        last_signer = signer
    return True, ERR_NONE


@internal
@pure
def _should_check_hash(_callData: Bytes[MAX_CALLDATA]) -> bool:
    if len(_callData) < 4:
        return True
    selector: bytes4 = convert(slice(_callData, 0, 4), bytes4)
    return selector != VERIFY_SELECTOR and selector != UPDATE_HASH_SELECTOR


@internal
def _add_signer(_signer: address):
    assert _signer != empty(address), "MultiSig: invalid signer"
    assert not self.isSigner[_signer], "MultiSig: signer already set"
    self.isSigner[_signer] = True
    self._signers.append(_signer)
    log UpdateSigner(_signer=_signer, _active=True)


@internal
def _remove_signer(_signer: address):
    assert self.isSigner[_signer], "MultiSig: signer not set"
    self.isSigner[_signer] = False
    kept: DynArray[address, MAX_SIGNERS] = []
    for signer: address in self._signers:
        if signer != _signer:
            kept.append(signer)
    self._signers = kept
    log UpdateSigner(_signer=_signer, _active=False)


@internal
def _set_quorum(_quorum: uint64):
    assert _quorum != 0, "MultiSig: quorum is zero"
    assert len(self._signers) >= convert(_quorum, uint256), "MultiSig: signers fewer than quorum"
    self.quorum = _quorum
    log UpdateQuorum(_quorum=_quorum)


@internal
@view
def _check_role_change(_role: bytes32):
    assert _role == ADMIN_ROLE, "DVN: only the admin role is modelled"
    assert self._admins[msg.sender] or msg.sender == self.owner, "DVN: caller is not an admin"
