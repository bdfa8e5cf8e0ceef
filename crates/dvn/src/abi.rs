//! The LayerZero V2 contract surface the relayer touches, as Solidity declarations: the events
//! it reads on the source chain, the calls it makes on the target chain. `sol!` derives the
//! ABI encoding and the selectors and topics from these exact signatures, and the tests pin
//! them to the values LayerZero's deployed contracts use.

// The generated items are `pub` inside this private module and carry no docs of their own;
// the declarations below are the documentation.
#![allow(missing_docs, unreachable_pub)]

alloy::sol! {
    /// EndpointV2, on the source chain: one per packet sent.
    event PacketSent(bytes encodedPayload, bytes options, address sendLibrary);

    /// SendUln302, on the source chain: the DVNs the packet's sender assigned and their fees.
    event DVNFeePaid(address[] requiredDVNs, address[] optionalDVNs, uint256[] fees);

    /// ReceiveUln302, on the target chain: a DVN's verification was recorded.
    event PayloadVerified(address dvn, bytes header, uint256 confirmations, bytes32 proofHash);

    /// ReceiveUln302: what the DVN contract calls through `execute`.
    function verify(bytes packetHeader, bytes32 payloadHash, uint64 confirmations);

    /// ReceiveUln302: the verification a DVN recorded for a header and payload.
    function hashLookup(bytes32 headerHash, bytes32 payloadHash, address dvn)
        returns (bool submitted, uint64 confirmations);

    /// ReceiveUln302's effective configuration for an OApp and a source.
    struct UlnConfig {
        uint64 confirmations;
        uint8 requiredDVNCount;
        uint8 optionalDVNCount;
        uint8 optionalDVNThreshold;
        address[] requiredDVNs;
        address[] optionalDVNs;
    }

    function getUlnConfig(address oapp, uint32 remoteEid) returns (UlnConfig memory rtnConfig);

    /// The DVN multisig's unit of work: a call signed by a quorum of its signers.
    struct ExecuteParam {
        uint32 vid;
        address target;
        bytes callData;
        uint256 expiration;
        bytes signatures;
    }

    /// DVN: runs each call whose signatures reach the quorum; never reverts for one item.
    function execute(ExecuteParam[] params);
}
