//! What the DVN relayer decodes from source-chain logs (`mpc_dvn::packet`): PacketV1
//! encodings and the `PacketSent`, `DVNFeePaid` and `PayloadVerified` logs, which anyone can
//! make a contract emit. Decoders must answer an error, never panic; a packet that decodes
//! must re-encode to the bytes it came from.
//!
//! Input: a mode byte, then
//! - 0: a packet encoding, decoded, its header, hashes and receiver read, and its job record
//!   made (`listener::discovered_packet`);
//! - 1, 2, 3: a topic count byte (0..=4, taken modulo 5), that many 32-byte topics, then the
//!   log data, decoded as `PacketSent`, `DVNFeePaid` or `PayloadVerified`; when the first
//!   topic is not given, the event's own topic is used, so the data decoder is reached.

#![no_main]

use alloy::primitives::B256;
use libfuzzer_sys::fuzz_target;
use mpc_dvn::listener::discovered_packet;
use mpc_dvn::packet::{
    decode_dvn_fee_paid, decode_packet_sent, decode_payload_verified, Packet, DVN_FEE_PAID_TOPIC,
    PACKET_SENT_TOPIC, PAYLOAD_VERIFIED_TOPIC,
};

fn topics_and_data(input: &[u8], own: B256) -> (Vec<B256>, &[u8]) {
    let Some((&count, rest)) = input.split_first() else {
        return (vec![own], input);
    };
    let count = usize::from(count % 5);
    let mut topics = Vec::with_capacity(count.max(1));
    let mut rest = rest;
    for _ in 0..count {
        if rest.len() < 32 {
            break;
        }
        let (t, r) = rest.split_at(32);
        topics.push(B256::from_slice(t));
        rest = r;
    }
    if topics.is_empty() {
        topics.push(own);
    }
    (topics, rest)
}

fuzz_target!(|input: &[u8]| {
    let Some((&mode, body)) = input.split_first() else {
        return;
    };
    match mode % 4 {
        0 => {
            if let Ok(p) = Packet::decode(body) {
                let mut encoded = p.header().to_vec();
                encoded.extend_from_slice(p.guid.as_slice());
                encoded.extend_from_slice(&p.message);
                assert_eq!(encoded, body, "a decoded packet re-encodes to its bytes");
                let _ = (p.header_hash(), p.expected_guid(), p.payload_hash());
                let _ = p.receiver_address();
            }
            let _ = discovered_packet(30101, body, B256::ZERO, 0);
        }
        1 => {
            let (topics, data) = topics_and_data(body, PACKET_SENT_TOPIC);
            if let Ok(sent) = decode_packet_sent(&topics, data) {
                let _ = Packet::decode(&sent.encoded_payload);
            }
        }
        2 => {
            let (topics, data) = topics_and_data(body, DVN_FEE_PAID_TOPIC);
            let _ = decode_dvn_fee_paid(&topics, data);
        }
        _ => {
            let (topics, data) = topics_and_data(body, PAYLOAD_VERIFIED_TOPIC);
            let _ = decode_payload_verified(&topics, data);
        }
    }
});
