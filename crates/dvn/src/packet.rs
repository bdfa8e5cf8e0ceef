//! LayerZero V2 packets as the source chain emits them: the PacketV1 encoding, its header and
//! hashes, and the two logs that announce a packet and the DVNs assigned to it.
//!
//! Everything here reads bytes an RPC node (or a contract anyone deployed) handed us, so it
//! returns errors that name the field and never panics (the `dvn_packet` fuzz target holds it
//! to that).

use alloy::primitives::{keccak256, Address, LogData, B256, U256};
use alloy::sol_types::SolEvent;
use mpc_types::relay::PACKET_HEADER_LEN;

use crate::abi;

/// The only packet version this relayer verifies.
pub const PACKET_VERSION: u8 = 1;

/// Bytes before the message: the header and the guid.
const PAYLOAD_PREFIX_LEN: usize = PACKET_HEADER_LEN + 32;

/// `keccak256("PacketSent(bytes,bytes,address)")`, emitted by EndpointV2.
pub const PACKET_SENT_TOPIC: B256 = abi::PacketSent::SIGNATURE_HASH;

/// `keccak256("DVNFeePaid(address[],address[],uint256[])")`, emitted by the send library.
pub const DVN_FEE_PAID_TOPIC: B256 = abi::DVNFeePaid::SIGNATURE_HASH;

/// `keccak256("PayloadVerified(address,bytes,uint256,bytes32)")`, emitted by the receive
/// library.
pub const PAYLOAD_VERIFIED_TOPIC: B256 = abi::PayloadVerified::SIGNATURE_HASH;

/// Why bytes are not a packet or a log we know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    /// The bytes end before a field does.
    #[error("packet too short: {field} needs bytes {start}..{end}, the packet has {len}")]
    Truncated {
        /// The field cut off.
        field: &'static str,
        /// Where it starts.
        start: usize,
        /// Where it ends.
        end: usize,
        /// The packet's length.
        len: usize,
    },
    /// A log whose first topic is not the event's.
    #[error("{event} log: topic0 is {found}, expected {expected}")]
    WrongTopic {
        /// The event expected.
        event: &'static str,
        /// The topic found (or "none").
        found: String,
        /// The event's topic.
        expected: B256,
    },
    /// A log whose data does not ABI-decode as the event.
    #[error("{event} log: {reason}")]
    BadLog {
        /// The event expected.
        event: &'static str,
        /// What the decoder said.
        reason: String,
    },
}

/// A PacketV1, decoded. Fields are as emitted: [`Packet::decode`] checks only the layout;
/// what a packet must say to be verified is the verifier's judgement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    /// The encoding version (1 for PacketV1).
    pub version: u8,
    /// The packet's nonce on its path (sender, dstEid, receiver).
    pub nonce: u64,
    /// The source endpoint id.
    pub src_eid: u32,
    /// The sending OApp, left-padded to 32 bytes.
    pub sender: B256,
    /// The destination endpoint id.
    pub dst_eid: u32,
    /// The receiving OApp, left-padded to 32 bytes.
    pub receiver: B256,
    /// The packet's guid as emitted.
    pub guid: B256,
    /// The application message.
    pub message: Vec<u8>,
}

/// Reads `N` bytes at `start`, naming `field` when they are not there.
fn field<const N: usize>(
    bytes: &[u8],
    start: usize,
    name: &'static str,
) -> Result<[u8; N], PacketError> {
    let end = start + N;
    bytes
        .get(start..end)
        .and_then(|s| <[u8; N]>::try_from(s).ok())
        .ok_or(PacketError::Truncated {
            field: name,
            start,
            end,
            len: bytes.len(),
        })
}

impl Packet {
    /// Decodes `version ‖ nonce ‖ srcEid ‖ sender ‖ dstEid ‖ receiver ‖ guid ‖ message`
    /// (big-endian integers, packed). Any version decodes; the layout is PacketV1's.
    pub fn decode(bytes: &[u8]) -> Result<Self, PacketError> {
        let [version] = field::<1>(bytes, 0, "version")?;
        let nonce = u64::from_be_bytes(field(bytes, 1, "nonce")?);
        let src_eid = u32::from_be_bytes(field(bytes, 9, "srcEid")?);
        let sender = B256::from(field::<32>(bytes, 13, "sender")?);
        let dst_eid = u32::from_be_bytes(field(bytes, 45, "dstEid")?);
        let receiver = B256::from(field::<32>(bytes, 49, "receiver")?);
        let guid = B256::from(field::<32>(bytes, PACKET_HEADER_LEN, "guid")?);
        let message = bytes.get(PAYLOAD_PREFIX_LEN..).unwrap_or_default().to_vec();
        Ok(Self {
            version,
            nonce,
            src_eid,
            sender,
            dst_eid,
            receiver,
            guid,
            message,
        })
    }

    /// The 81-byte header the receive library's `verify` takes.
    pub fn header(&self) -> [u8; PACKET_HEADER_LEN] {
        let mut h = [0u8; PACKET_HEADER_LEN];
        h[0] = self.version;
        h[1..9].copy_from_slice(&self.nonce.to_be_bytes());
        h[9..13].copy_from_slice(&self.src_eid.to_be_bytes());
        h[13..45].copy_from_slice(self.sender.as_slice());
        h[45..49].copy_from_slice(&self.dst_eid.to_be_bytes());
        h[49..81].copy_from_slice(self.receiver.as_slice());
        h
    }

    /// keccak256 of the header: the receive library's key for verifications.
    pub fn header_hash(&self) -> B256 {
        keccak256(self.header())
    }

    /// The guid EndpointV2 derives for this path and nonce:
    /// `keccak256(nonce ‖ srcEid ‖ sender ‖ dstEid ‖ receiver)`. A packet whose emitted guid
    /// differs was not made by a conforming endpoint.
    pub fn expected_guid(&self) -> B256 {
        let mut pre = [0u8; 8 + 4 + 32 + 4 + 32];
        pre[0..8].copy_from_slice(&self.nonce.to_be_bytes());
        pre[8..12].copy_from_slice(&self.src_eid.to_be_bytes());
        pre[12..44].copy_from_slice(self.sender.as_slice());
        pre[44..48].copy_from_slice(&self.dst_eid.to_be_bytes());
        pre[48..80].copy_from_slice(self.receiver.as_slice());
        keccak256(pre)
    }

    /// `keccak256(guid ‖ message)`: what the DVN attests to, with the emitted guid.
    pub fn payload_hash(&self) -> B256 {
        let mut pre = Vec::with_capacity(32 + self.message.len());
        pre.extend_from_slice(self.guid.as_slice());
        pre.extend_from_slice(&self.message);
        keccak256(pre)
    }

    /// The receiver as an EVM address, when its upper 12 bytes are zero.
    pub fn receiver_address(&self) -> Option<Address> {
        let (pad, addr) = self.receiver.as_slice().split_at(12);
        pad.iter()
            .all(|b| *b == 0)
            .then(|| Address::from_slice(addr))
    }
}

/// The `PacketSent` log of EndpointV2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PacketSent {
    /// The packet, encoded (see [`Packet::decode`]).
    pub encoded_payload: Vec<u8>,
    /// The sender's executor and DVN options (not used by the verifier).
    pub options: Vec<u8>,
    /// The send library that handled the packet.
    pub send_library: Address,
}

/// The `DVNFeePaid` log of the send library.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DvnFeePaid {
    /// DVNs that must all verify the packet.
    pub required_dvns: Vec<Address>,
    /// DVNs of which a threshold must verify it.
    pub optional_dvns: Vec<Address>,
    /// Fees paid, required DVNs first.
    pub fees: Vec<U256>,
}

impl DvnFeePaid {
    /// Whether `dvn` is among the required or the optional DVNs.
    pub fn assigns(&self, dvn: Address) -> bool {
        self.required_dvns.contains(&dvn) || self.optional_dvns.contains(&dvn)
    }
}

fn check_topic(event: &'static str, topics: &[B256], expected: B256) -> Result<(), PacketError> {
    match topics.first() {
        Some(t) if *t == expected => Ok(()),
        found => Err(PacketError::WrongTopic {
            event,
            found: found.map_or_else(|| "none".to_owned(), |t| t.to_string()),
            expected,
        }),
    }
}

fn decode_event<E: SolEvent>(
    event: &'static str,
    topics: &[B256],
    data: &[u8],
) -> Result<E, PacketError> {
    check_topic(event, topics, E::SIGNATURE_HASH)?;
    let log =
        LogData::new(topics.to_vec(), data.to_vec().into()).ok_or_else(|| PacketError::BadLog {
            event,
            reason: format!("{} topics, at most 4 allowed", topics.len()),
        })?;
    E::decode_log_data(&log).map_err(|e| PacketError::BadLog {
        event,
        reason: e.to_string(),
    })
}

/// Decodes a `PacketSent(bytes encodedPayload, bytes options, address sendLibrary)` log.
pub fn decode_packet_sent(topics: &[B256], data: &[u8]) -> Result<PacketSent, PacketError> {
    let e: abi::PacketSent = decode_event("PacketSent", topics, data)?;
    Ok(PacketSent {
        encoded_payload: e.encodedPayload.to_vec(),
        options: e.options.to_vec(),
        send_library: e.sendLibrary,
    })
}

/// Decodes a `DVNFeePaid(address[] requiredDVNs, address[] optionalDVNs, uint256[] fees)`
/// log.
pub fn decode_dvn_fee_paid(topics: &[B256], data: &[u8]) -> Result<DvnFeePaid, PacketError> {
    let e: abi::DVNFeePaid = decode_event("DVNFeePaid", topics, data)?;
    Ok(DvnFeePaid {
        required_dvns: e.requiredDVNs,
        optional_dvns: e.optionalDVNs,
        fees: e.fees,
    })
}

/// The `PayloadVerified` log of the receive library.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayloadVerified {
    /// The DVN contract that verified.
    pub dvn: Address,
    /// The packet header it verified.
    pub header: Vec<u8>,
    /// The confirmations it attested.
    pub confirmations: U256,
    /// The payload hash.
    pub proof_hash: B256,
}

/// Decodes a `PayloadVerified(address dvn, bytes header, uint256 confirmations, bytes32
/// proofHash)` log.
pub fn decode_payload_verified(
    topics: &[B256],
    data: &[u8],
) -> Result<PayloadVerified, PacketError> {
    let e: abi::PayloadVerified = decode_event("PayloadVerified", topics, data)?;
    Ok(PayloadVerified {
        dvn: e.dvn,
        header: e.header.to_vec(),
        confirmations: e.confirmations,
        proof_hash: e.proofHash,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use alloy::primitives::{address, b256, Bytes};
    use alloy::sol_types::SolValue;

    /// A well-formed packet from eid 30101 to 30212.
    pub(crate) fn sample_packet(nonce: u64, message: &[u8]) -> Packet {
        let mut p = Packet {
            version: PACKET_VERSION,
            nonce,
            src_eid: 30101,
            sender: B256::left_padding_from(&[0x11; 20]),
            dst_eid: 30212,
            receiver: B256::left_padding_from(&[0x22; 20]),
            guid: B256::ZERO,
            message: message.to_vec(),
        };
        p.guid = p.expected_guid();
        p
    }

    pub(crate) fn encode(p: &Packet) -> Vec<u8> {
        let mut out = p.header().to_vec();
        out.extend_from_slice(p.guid.as_slice());
        out.extend_from_slice(&p.message);
        out
    }

    #[test]
    fn topics_are_the_keccak_of_the_event_signatures() {
        assert_eq!(
            PACKET_SENT_TOPIC,
            keccak256("PacketSent(bytes,bytes,address)")
        );
        assert_eq!(
            PACKET_SENT_TOPIC,
            b256!("1ab700d4ced0c005b164c0f789fd09fcbb0156d4c2041b8a3bfbcd961cd1567f")
        );
        assert_eq!(
            DVN_FEE_PAID_TOPIC,
            keccak256("DVNFeePaid(address[],address[],uint256[])")
        );
        assert_eq!(
            DVN_FEE_PAID_TOPIC,
            b256!("07ea52d82345d6e838192107d8fd7123d9c2ec8e916cd0aad13fd2b60db24644")
        );
        assert_eq!(
            PAYLOAD_VERIFIED_TOPIC,
            keccak256("PayloadVerified(address,bytes,uint256,bytes32)")
        );
    }

    #[test]
    fn a_packet_round_trips_and_its_hashes_follow_layerzero() {
        let p = sample_packet(7, b"hello");
        let bytes = encode(&p);
        assert_eq!(bytes.len(), 81 + 32 + 5);
        let d = Packet::decode(&bytes).unwrap();
        assert_eq!(d, p);
        assert_eq!(&d.header()[..], &bytes[..81]);
        assert_eq!(d.header_hash(), keccak256(&bytes[..81]));
        // guid = keccak256(abi.encodePacked(uint64, uint32, bytes32, uint32, bytes32))
        let packed = [
            &7u64.to_be_bytes()[..],
            &30101u32.to_be_bytes(),
            p.sender.as_slice(),
            &30212u32.to_be_bytes(),
            p.receiver.as_slice(),
        ]
        .concat();
        assert_eq!(d.guid, keccak256(packed));
        assert_eq!(d.payload_hash(), keccak256(&bytes[81..]));
        assert_eq!(d.receiver_address(), Some(Address::from([0x22; 20])));
    }

    #[test]
    fn an_empty_message_is_a_packet_and_a_short_one_names_the_field() {
        let p = sample_packet(1, b"");
        assert_eq!(Packet::decode(&encode(&p)).unwrap(), p);
        let err = Packet::decode(&encode(&p)[..100]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "packet too short: guid needs bytes 81..113, the packet has 100"
        );
        let err = Packet::decode(&[]).unwrap_err();
        assert!(err.to_string().contains("version"), "{err}");
        let err = Packet::decode(&[1, 0, 0]).unwrap_err();
        assert!(err.to_string().contains("nonce"), "{err}");
    }

    #[test]
    fn a_receiver_with_high_bytes_is_not_an_evm_address() {
        let mut p = sample_packet(1, b"");
        p.receiver = B256::repeat_byte(1);
        assert_eq!(p.receiver_address(), None);
    }

    #[test]
    fn the_logs_decode_and_wrong_ones_say_why() {
        let lib = address!("00000000000000000000000000000000000000aa");
        let data = (Bytes::from(vec![1, 2, 3]), Bytes::from(vec![4]), lib).abi_encode_params();
        let sent = decode_packet_sent(&[PACKET_SENT_TOPIC], &data).unwrap();
        assert_eq!(sent.encoded_payload, vec![1, 2, 3]);
        assert_eq!(sent.options, vec![4]);
        assert_eq!(sent.send_library, lib);

        let dvn = address!("00000000000000000000000000000000000000d1");
        let data = (vec![dvn], Vec::<Address>::new(), vec![U256::from(5u8)]).abi_encode_params();
        let fee = decode_dvn_fee_paid(&[DVN_FEE_PAID_TOPIC], &data).unwrap();
        assert!(fee.assigns(dvn));
        assert!(!fee.assigns(lib));

        let err = decode_dvn_fee_paid(&[PACKET_SENT_TOPIC], &data).unwrap_err();
        assert!(err.to_string().contains("DVNFeePaid log: topic0"), "{err}");
        let err = decode_packet_sent(&[], &data).unwrap_err();
        assert!(err.to_string().contains("none"), "{err}");
        let err = decode_packet_sent(&[PACKET_SENT_TOPIC], &data[..40]).unwrap_err();
        assert!(matches!(err, PacketError::BadLog { .. }), "{err}");
    }
}
