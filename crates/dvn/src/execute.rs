//! What the DVN's signers sign and what the submitter sends: the receive library's `verify`
//! call, the execute hash over it, and `DVN.execute(ExecuteParam[])` with a quorum's
//! signatures.

use alloy::primitives::{keccak256, Address, Bytes, B256, U256};
use alloy::sol_types::SolCall;

use crate::abi;

/// Bytes of one signature: r ‖ s ‖ v.
pub const SIGNATURE_LEN: usize = 65;

/// Why a quorum's signatures cannot go into an `ExecuteParam`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExecuteError {
    /// Not exactly a quorum of them.
    #[error("signatures: {got} given, the quorum is exactly {quorum}")]
    NotQuorum {
        /// How many were given.
        got: usize,
        /// The DVN's quorum.
        quorum: usize,
    },
    /// The DVN contract checks signers in strictly ascending address order.
    #[error("signatures: signer {signer} does not come strictly after {previous}")]
    NotAscending {
        /// The signer out of order.
        signer: Address,
        /// The one before it.
        previous: Address,
    },
    /// A signature that is not 65 bytes.
    #[error("signatures: the one by {signer} is {len} bytes, not 65")]
    BadLength {
        /// Its signer.
        signer: Address,
        /// Its length.
        len: usize,
    },
}

/// `ReceiveUln302.verify(bytes packetHeader, bytes32 payloadHash, uint64 confirmations)`.
pub fn verify_calldata(header: &[u8], payload_hash: B256, confirmations: u64) -> Bytes {
    abi::verifyCall {
        packetHeader: Bytes::copy_from_slice(header),
        payloadHash: payload_hash,
        confirmations,
    }
    .abi_encode()
    .into()
}

/// The EIP-191 ("personal_sign") digest of a 32-byte hash:
/// `keccak256("\x19Ethereum Signed Message:\n32" ‖ hash)`.
pub fn eip191_digest(hash: B256) -> B256 {
    keccak256(eip191_message(hash))
}

/// The 60 bytes whose keccak256 is [`eip191_digest`]: what a signer that hashes messages
/// itself is given.
pub fn eip191_message(hash: B256) -> [u8; 60] {
    let mut m = [0u8; 60];
    m[..28].copy_from_slice(b"\x19Ethereum Signed Message:\n32");
    m[28..].copy_from_slice(hash.as_slice());
    m
}

/// One call for the DVN contract to make, before it is signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecuteCall {
    /// The DVN's verifier id on the target chain.
    pub vid: u32,
    /// The contract it calls: the receive library.
    pub target: Address,
    /// The call (see [`verify_calldata`]).
    pub call_data: Bytes,
    /// Seconds since the epoch after which the DVN contract refuses it.
    pub expiration: u64,
}

impl ExecuteCall {
    /// `keccak256(abi.encodePacked(uint32 vid, address target, uint256 expiration, bytes
    /// callData))`: the DVN contract's hash of the call. The order differs from the
    /// `ExecuteParam` struct's (call data before expiration there); this is the contract's.
    pub fn hash(&self) -> B256 {
        let mut pre = Vec::with_capacity(4 + 20 + 32 + self.call_data.len());
        pre.extend_from_slice(&self.vid.to_be_bytes());
        pre.extend_from_slice(self.target.as_slice());
        pre.extend_from_slice(&U256::from(self.expiration).to_be_bytes::<32>());
        pre.extend_from_slice(&self.call_data);
        keccak256(pre)
    }

    /// What each signer signs: the EIP-191 digest of [`ExecuteCall::hash`].
    pub fn signing_digest(&self) -> B256 {
        eip191_digest(self.hash())
    }
}

/// A quorum's signatures, concatenated in the order the DVN contract demands: strictly
/// ascending signer address, exactly `quorum` × 65 bytes.
pub fn quorum_signatures(
    signatures: &[(Address, &[u8])],
    quorum: usize,
) -> Result<Bytes, ExecuteError> {
    if signatures.len() != quorum || quorum == 0 {
        return Err(ExecuteError::NotQuorum {
            got: signatures.len(),
            quorum,
        });
    }
    let mut out = Vec::with_capacity(quorum * SIGNATURE_LEN);
    let mut previous: Option<Address> = None;
    for (signer, sig) in signatures {
        if let Some(previous) = previous.filter(|p| p >= signer) {
            return Err(ExecuteError::NotAscending {
                signer: *signer,
                previous,
            });
        }
        if sig.len() != SIGNATURE_LEN {
            return Err(ExecuteError::BadLength {
                signer: *signer,
                len: sig.len(),
            });
        }
        out.extend_from_slice(sig);
        previous = Some(*signer);
    }
    Ok(out.into())
}

/// `DVN.execute(ExecuteParam[] params)` for signed calls.
pub fn execute_calldata(calls: &[(ExecuteCall, Bytes)]) -> Bytes {
    abi::executeCall {
        params: calls
            .iter()
            .map(|(call, signatures)| abi::ExecuteParam {
                vid: call.vid,
                target: call.target,
                callData: call.call_data.clone(),
                expiration: U256::from(call.expiration),
                signatures: signatures.clone(),
            })
            .collect(),
    }
    .abi_encode()
    .into()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use alloy::primitives::{address, hex};
    use alloy::sol_types::SolValue;

    #[test]
    fn selectors_are_layerzero_s() {
        assert_eq!(abi::verifyCall::SELECTOR, hex!("0223536e"));
        assert_eq!(
            abi::verifyCall::SELECTOR[..],
            keccak256("verify(bytes,bytes32,uint64)")[..4]
        );
        assert_eq!(abi::executeCall::SELECTOR, hex!("b143044b"));
        assert_eq!(
            abi::executeCall::SELECTOR[..],
            keccak256("execute((uint32,address,bytes,uint256,bytes)[])")[..4]
        );
        assert_eq!(
            abi::hashLookupCall::SELECTOR[..],
            keccak256("hashLookup(bytes32,bytes32,address)")[..4]
        );
        assert_eq!(
            abi::getUlnConfigCall::SELECTOR[..],
            keccak256("getUlnConfig(address,uint32)")[..4]
        );
    }

    #[test]
    fn verify_calldata_is_the_selector_and_the_abi_encoded_arguments() {
        let header = [7u8; 81];
        let payload = B256::repeat_byte(9);
        let data = verify_calldata(&header, payload, 15);
        assert_eq!(data[..4], hex!("0223536e"));
        let args = (Bytes::from(header.to_vec()), payload, 15u64).abi_encode_params();
        assert_eq!(data[4..], args[..]);
    }

    #[test]
    fn the_execute_hash_packs_vid_target_expiration_then_call_data() {
        let call = ExecuteCall {
            vid: 2,
            target: address!("00000000000000000000000000000000000000aa"),
            call_data: Bytes::from(vec![0xde, 0xad]),
            expiration: 1_000,
        };
        let mut expiration = [0u8; 32];
        expiration[30..].copy_from_slice(&1_000u16.to_be_bytes());
        let packed = [
            &[0, 0, 0, 2][..],
            &[0; 19],
            &[0xaa],
            &expiration,
            &[0xde, 0xad],
        ]
        .concat();
        assert_eq!(call.hash(), keccak256(packed));
        let mut prefixed = b"\x19Ethereum Signed Message:\n32".to_vec();
        prefixed.extend_from_slice(call.hash().as_slice());
        assert_eq!(call.signing_digest(), keccak256(prefixed));
        assert_eq!(eip191_message(call.hash()).len(), 60);
    }

    #[test]
    fn signatures_go_in_strictly_ascending_signer_order_and_exactly_a_quorum() {
        let a = Address::repeat_byte(1);
        let b = Address::repeat_byte(2);
        let (sa, sb) = ([1u8; 65], [2u8; 65]);
        let joined = quorum_signatures(&[(a, &sa), (b, &sb)], 2).unwrap();
        assert_eq!(joined.len(), 130);
        assert_eq!(joined[..65], sa);
        assert!(matches!(
            quorum_signatures(&[(b, &sb), (a, &sa)], 2),
            Err(ExecuteError::NotAscending { .. })
        ));
        assert!(matches!(
            quorum_signatures(&[(a, &sa), (a, &sa)], 2),
            Err(ExecuteError::NotAscending { .. })
        ));
        assert!(matches!(
            quorum_signatures(&[(a, &sa)], 2),
            Err(ExecuteError::NotQuorum { got: 1, quorum: 2 })
        ));
        assert!(matches!(
            quorum_signatures(&[(a, &sa[..64])], 1),
            Err(ExecuteError::BadLength { len: 64, .. })
        ));
    }

    #[test]
    fn execute_calldata_encodes_the_params_array() {
        let call = ExecuteCall {
            vid: 1,
            target: Address::repeat_byte(3),
            call_data: Bytes::from(vec![1, 2, 3]),
            expiration: 99,
        };
        let sigs = Bytes::from(vec![5u8; 65]);
        let data = execute_calldata(&[(call.clone(), sigs.clone())]);
        assert_eq!(data[..4], hex!("b143044b"));
        let decoded = abi::executeCall::abi_decode(&data).unwrap();
        assert_eq!(decoded.params.len(), 1);
        let p = &decoded.params[0];
        assert_eq!(
            (p.vid, p.target, &p.callData, p.expiration, &p.signatures),
            (1, call.target, &call.call_data, U256::from(99u8), &sigs)
        );
    }
}
