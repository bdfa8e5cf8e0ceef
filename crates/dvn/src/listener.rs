//! The listener: finds the packets that assign our DVN on one source chain and records them
//! as jobs.
//!
//! Each pass scans `[cursor + 1, head − confirmations]`, at most [`MAX_LOG_RANGE`] blocks at a
//! time, for EndpointV2's `PacketSent` and the send libraries' `DVNFeePaid`, pairs each packet
//! with the fee log of the same transaction and send library, and keeps those whose required
//! or optional DVNs include ours. The jobs and the new cursor are one write to the job book,
//! so a crash between scanning and recording rescans the same blocks and loses nothing.
//!
//! The listener judges nothing beyond the assignment: a packet with a wrong version, eid or
//! guid, or from an unknown send library, is recorded all the same, so that the verifiers
//! reject it with its reason on record.

use std::sync::Arc;

use alloy::primitives::{keccak256, Address, B256};
use alloy::rpc::types::Log;
use mpc_types::relay::{DiscoveredPacket, PACKET_HEADER_LEN};
use tokio::sync::watch;

use crate::chain::{ChainClient, MAX_LOG_RANGE};
use crate::config::SourceChainConfig;
use crate::error::{unix_now_secs, DvnError};
use crate::jobs::JobStore;
use crate::metrics::{self, EventStatus};
use crate::packet::{self, Packet, DVN_FEE_PAID_TOPIC, PACKET_SENT_TOPIC};
use crate::retry::Backoff;

/// A packet as the job book keeps it, from its encoding as emitted: the header is the first
/// 81 bytes and the payload hash the keccak256 of the rest (for a well-formed packet, exactly
/// `keccak256(guid ‖ message)`), so even a packet too short to decode gets a record that
/// names its bytes.
pub fn discovered_packet(
    src_eid: u32,
    encoded: &[u8],
    source_tx: B256,
    source_block: u64,
) -> DiscoveredPacket {
    let split = encoded.len().min(PACKET_HEADER_LEN);
    let (header, rest) = encoded.split_at(split);
    let decoded = Packet::decode(encoded).ok();
    DiscoveredPacket {
        src_eid,
        dst_eid: decoded.as_ref().map_or(0, |p| p.dst_eid),
        nonce: decoded.as_ref().map_or(0, |p| p.nonce),
        guid: decoded.as_ref().map_or([0; 32], |p| p.guid.0),
        header: header.to_vec(),
        payload_hash: keccak256(rest).0,
        source_tx: source_tx.0,
        source_block,
    }
}

/// A `DVNFeePaid` log with where it was emitted.
struct FeeLog {
    tx: B256,
    log_index: u64,
    emitter: Address,
    fee: packet::DvnFeePaid,
    used: bool,
}

/// The packets in `sent_logs` (PacketSent from the configured endpoint) that `fee_logs`
/// (DVNFeePaid from any contract) assign to `dvn`, in chain order. Each packet pairs with a
/// fee log of its own transaction emitted by its send library: the nearest one before it,
/// as EndpointV2 emits `PacketSent` after the library's `send` returned.
pub fn assigned_packets(
    chain: &str,
    src_eid: u32,
    dvn: Address,
    sent_logs: &[Log],
    fee_logs: &[Log],
) -> Vec<DiscoveredPacket> {
    let mut fees: Vec<FeeLog> = fee_logs
        .iter()
        .filter_map(|log| {
            let tx = log.transaction_hash?;
            let fee = packet::decode_dvn_fee_paid(log.topics(), &log.data().data).ok()?;
            Some(FeeLog {
                tx,
                log_index: log.log_index.unwrap_or_default(),
                emitter: log.address(),
                fee,
                used: false,
            })
        })
        .collect();
    let mut sent: Vec<&Log> = sent_logs.iter().collect();
    sent.sort_by_key(|l| (l.block_number, l.log_index));

    let mut out = Vec::new();
    for log in sent {
        let (Some(tx), Some(block)) = (log.transaction_hash, log.block_number) else {
            metrics::event_received(chain, EventStatus::Malformed);
            continue;
        };
        let sent = match packet::decode_packet_sent(log.topics(), &log.data().data) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(chain, tx = %tx, error = %e, "PacketSent log ignored");
                metrics::event_received(chain, EventStatus::Malformed);
                continue;
            }
        };
        let index = log.log_index.unwrap_or_default();
        let same = |f: &FeeLog| !f.used && f.tx == tx && f.emitter == sent.send_library;
        let before = fees
            .iter()
            .enumerate()
            .filter(|(_, f)| same(f) && f.log_index < index)
            .max_by_key(|(_, f)| f.log_index)
            .map(|(i, _)| i);
        let paired = before.or_else(|| fees.iter().position(same));
        match paired {
            Some(i) if fees[i].fee.assigns(dvn) => {
                fees[i].used = true;
                metrics::event_received(chain, EventStatus::Assigned);
                out.push(discovered_packet(src_eid, &sent.encoded_payload, tx, block));
            }
            Some(i) => {
                fees[i].used = true;
                metrics::event_received(chain, EventStatus::Unassigned);
            }
            None => metrics::event_received(chain, EventStatus::Unassigned),
        }
    }
    out
}

/// What one pass did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScanProgress {
    /// Scanned up to the confirmed head: wait for new blocks.
    CaughtUp,
    /// Scanned a range and more blocks are waiting.
    Behind,
}

/// The listener of one source chain.
#[derive(Debug)]
pub struct Listener<S> {
    store: Arc<S>,
    chain: Arc<ChainClient>,
    source: SourceChainConfig,
    expiration_ttl_secs: u64,
}

impl<S: JobStore> Listener<S> {
    /// A listener for `source`, reading through `chain` and recording into `store`; new jobs
    /// expire `expiration_ttl_secs` after their discovery.
    pub fn new(
        store: Arc<S>,
        chain: Arc<ChainClient>,
        source: SourceChainConfig,
        expiration_ttl_secs: u64,
    ) -> Self {
        Self {
            store,
            chain,
            source,
            expiration_ttl_secs,
        }
    }

    /// One pass: the next range after the cursor, recorded.
    pub async fn scan_once(&self) -> Result<ScanProgress, DvnError> {
        let src = &self.source;
        let cursor = self.store.cursor(src.eid).await?;
        let head = self.chain.head().await?;
        let safe = head.saturating_sub(src.confirmations);
        let from = match cursor {
            Some(c) => c.saturating_add(1),
            None => src.start_block.unwrap_or(safe),
        };
        let lag = safe.saturating_sub(from.saturating_sub(1));
        ::metrics::gauge!(metrics::CURSOR_LAG, "chain" => src.name.clone()).set(lag as f64);
        if from > safe {
            return Ok(ScanProgress::CaughtUp);
        }
        let to = safe.min(from.saturating_add(MAX_LOG_RANGE - 1));
        let sent = self
            .chain
            .logs(&[src.endpoint], PACKET_SENT_TOPIC, from, to)
            .await?;
        // Fee logs from any contract: a packet from an unknown send library must still be
        // found, to be rejected with that reason.
        let fees = if sent.is_empty() {
            Vec::new()
        } else {
            self.chain.logs(&[], DVN_FEE_PAID_TOPIC, from, to).await?
        };
        let packets = assigned_packets(&src.name, src.eid, src.dvn, &sent, &fees);
        if !packets.is_empty() {
            tracing::info!(chain = %src.name, from, to, packets = packets.len(), "packets discovered");
        }
        let expiration = unix_now_secs() + self.expiration_ttl_secs;
        self.store
            .discover(src.eid, to, packets, expiration)
            .await?;
        Ok(if to < safe {
            ScanProgress::Behind
        } else {
            ScanProgress::CaughtUp
        })
    }

    /// Scans until `shutdown` turns true: at once while behind, every `poll` when caught
    /// up, with backoff after errors.
    pub async fn run(
        self,
        poll: std::time::Duration,
        max_backoff: std::time::Duration,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut backoff = Backoff::new(poll, max_backoff);
        while !*shutdown.borrow() {
            let wait = match self.scan_once().await {
                Ok(ScanProgress::Behind) => {
                    backoff.reset();
                    continue;
                }
                Ok(ScanProgress::CaughtUp) => {
                    backoff.reset();
                    poll
                }
                Err(e) => {
                    tracing::warn!(chain = %self.source.name, error = %e, "scan failed");
                    backoff.next_delay()
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.changed() => {}
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::packet::tests::{encode, sample_packet};
    use alloy::primitives::{Bytes, LogData, U256};
    use alloy::sol_types::SolValue;

    pub(crate) fn rpc_log(
        address: Address,
        topic: B256,
        data: Vec<u8>,
        tx: B256,
        block: u64,
        index: u64,
    ) -> Log {
        Log {
            inner: alloy::primitives::Log {
                address,
                data: LogData::new_unchecked(vec![topic], data.into()),
            },
            block_hash: Some(B256::repeat_byte(block as u8)),
            block_number: Some(block),
            block_timestamp: None,
            transaction_hash: Some(tx),
            transaction_index: Some(0),
            log_index: Some(index),
            removed: false,
        }
    }

    pub(crate) fn sent_log(
        endpoint: Address,
        payload: &[u8],
        lib: Address,
        tx: B256,
        block: u64,
        index: u64,
    ) -> Log {
        let data = (Bytes::from(payload.to_vec()), Bytes::new(), lib).abi_encode_params();
        rpc_log(endpoint, PACKET_SENT_TOPIC, data, tx, block, index)
    }

    pub(crate) fn fee_log(
        lib: Address,
        required: &[Address],
        tx: B256,
        block: u64,
        index: u64,
    ) -> Log {
        let data = (
            required.to_vec(),
            Vec::<Address>::new(),
            vec![U256::from(1u8); required.len()],
        )
            .abi_encode_params();
        rpc_log(lib, DVN_FEE_PAID_TOPIC, data, tx, block, index)
    }

    #[test]
    fn packets_pair_with_the_fee_log_of_their_transaction_and_library() {
        let endpoint = Address::repeat_byte(0xe1);
        let lib = Address::repeat_byte(0xa1);
        let other_lib = Address::repeat_byte(0xa2);
        let ours = Address::repeat_byte(0xd1);
        let theirs = Address::repeat_byte(0xd9);
        let (tx1, tx2, tx3) = (
            B256::repeat_byte(1),
            B256::repeat_byte(2),
            B256::repeat_byte(3),
        );
        let p1 = encode(&sample_packet(1, b"one"));
        let p2 = encode(&sample_packet(2, b"two"));
        let p3 = encode(&sample_packet(3, b"three"));
        let p4 = encode(&sample_packet(4, b"four"));
        let sent = vec![
            sent_log(endpoint, &p1, lib, tx1, 10, 1),
            // Same transaction, second packet: its own fee log, which assigns others.
            sent_log(endpoint, &p2, lib, tx1, 10, 3),
            // Assigned to us, but the fee log is another library's: not this packet's.
            sent_log(endpoint, &p3, lib, tx2, 11, 1),
            // An unknown send library that assigns us: found, for the verifier to reject.
            sent_log(endpoint, &p4, other_lib, tx3, 12, 1),
        ];
        let fees = vec![
            fee_log(lib, &[ours], tx1, 10, 0),
            fee_log(lib, &[theirs], tx1, 10, 2),
            fee_log(other_lib, &[ours], tx2, 11, 0),
            fee_log(other_lib, &[ours], tx3, 12, 0),
        ];
        let found = assigned_packets("src", 30101, ours, &sent, &fees);
        let nonces: Vec<u64> = found.iter().map(|p| p.nonce).collect();
        assert_eq!(nonces, vec![1, 4]);
        assert_eq!(found[0].header, p1[..81].to_vec());
        assert_eq!(found[0].payload_hash, keccak256(&p1[81..]).0);
        assert_eq!(found[0].source_tx, tx1.0);
        assert_eq!(found[0].source_block, 10);
        assert_eq!(found[0].src_eid, 30101);
    }

    #[test]
    fn a_packet_too_short_to_decode_is_still_recorded_by_its_bytes() {
        let p = discovered_packet(30101, &[1, 2, 3], B256::ZERO, 5);
        assert_eq!(p.header, vec![1, 2, 3]);
        assert_eq!(p.payload_hash, keccak256([]).0);
        assert_eq!((p.nonce, p.dst_eid, p.guid), (0, 0, [0; 32]));
        let full = sample_packet(9, b"m");
        let p = discovered_packet(30101, &encode(&full), B256::ZERO, 5);
        assert_eq!(p.payload_hash, full.payload_hash().0);
        assert_eq!(p.guid, full.guid.0);
    }
}
