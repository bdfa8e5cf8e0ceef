//! One EVM chain over JSON-RPC (HTTP): what the stages read from it and how the submitter
//! sends to it. Each chain may have several RPC endpoints; a call goes to the one that last
//! answered and falls over to the others in turn, so one endpoint down does not stop the
//! relayer. Retrying later (with backoff) is the callers' business.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use alloy::consensus::{SignableTransaction, TxEip1559, TxEnvelope, TxLegacy};
use alloy::eips::eip2718::Encodable2718;
use alloy::eips::BlockNumberOrTag;
use alloy::primitives::{Address, Bytes, TxKind, B256, U256};
use alloy::providers::{Provider, RootProvider};
use alloy::rpc::types::{Filter, Log, TransactionReceipt, TransactionRequest};
use alloy::sol_types::SolCall;
use alloy::transports::{RpcError, TransportErrorKind};

use crate::abi;
use crate::signer::Signer;

/// The most blocks one `eth_getLogs` covers: public endpoints refuse wider ranges.
pub const MAX_LOG_RANGE: u64 = 1000;

/// A failure to read from or send to a chain.
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    /// No endpoint answered (or every one answered with an error).
    #[error("{chain}: {call} failed on every RPC endpoint; last error: {last}")]
    Rpc {
        /// The chain's name.
        chain: String,
        /// The JSON-RPC method or contract call.
        call: String,
        /// The last endpoint's error.
        last: String,
    },
    /// An answer that makes no sense (an undecodable return value, a missing field).
    #[error("{chain}: {call}: {reason}")]
    BadAnswer {
        /// The chain's name.
        chain: String,
        /// The call that got it.
        call: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The settings name something unusable (a URL, a chain id that is not the chain's).
    #[error("{chain}: {reason}")]
    Config {
        /// The chain's name.
        chain: String,
        /// What to fix.
        reason: String,
    },
    /// The transaction could not be signed.
    #[error("{chain}: signing the transaction: {source}")]
    Signing {
        /// The chain's name.
        chain: String,
        /// The signer's error.
        source: crate::signer::SignerError,
    },
}

/// A DVN's verification as the receive library records it (`hashLookup`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verification {
    /// Whether the DVN verified this header and payload.
    pub submitted: bool,
    /// The confirmations it attested.
    pub confirmations: u64,
}

/// The parts of an OApp's receive configuration the verifier needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UlnConfig {
    /// Block confirmations the receiver requires on the source chain.
    pub confirmations: u64,
    /// DVNs that must verify.
    pub required_dvns: Vec<Address>,
    /// DVNs of which a threshold must verify.
    pub optional_dvns: Vec<Address>,
}

/// A signed transaction, ready to broadcast. Its hash is known before it is sent, so the
/// submission can be recorded first and a crash between the two never loses track of it.
#[derive(Debug, Clone)]
pub struct SignedTx {
    /// The transaction hash.
    pub hash: B256,
    /// The sender's account nonce it uses.
    pub nonce: u64,
    /// The gas limit it carries.
    pub gas_limit: u64,
    /// The EIP-2718 encoding for `eth_sendRawTransaction`.
    pub raw: Bytes,
}

/// Gas settings for sending.
#[derive(Debug, Clone, Copy)]
pub struct GasPolicy {
    /// The gas limit never exceeds this (Conflux eSpace refunds at most a quarter of unused
    /// gas, so an overestimate is paid for).
    pub max_gas: u64,
    /// Percent added to the estimate (20 → ×1.2).
    pub margin_percent: u64,
}

/// The gas limit to send with: the estimate plus the margin, capped.
pub fn gas_limit(estimate: u64, policy: GasPolicy) -> u64 {
    let with_margin = estimate.saturating_mul(100 + policy.margin_percent) / 100;
    with_margin.min(policy.max_gas)
}

/// One chain, through one or more RPC endpoints.
#[derive(Debug)]
pub struct ChainClient {
    name: String,
    chain_id: u64,
    providers: Vec<(String, RootProvider)>,
    /// The endpoint that answered last: tried first.
    preferred: AtomicUsize,
}

type RpcResult<T> = Result<T, RpcError<TransportErrorKind>>;

impl ChainClient {
    /// A client for chain `name` (chain id `chain_id`) through `urls` (at least one).
    pub fn new(name: &str, chain_id: u64, urls: &[String]) -> Result<Self, ChainError> {
        let config = |reason: String| ChainError::Config {
            chain: name.to_owned(),
            reason,
        };
        if urls.is_empty() {
            return Err(config("no RPC URL configured".into()));
        }
        let providers = urls
            .iter()
            .map(|u| {
                let url = u
                    .parse()
                    .map_err(|e| config(format!("RPC URL {u:?}: {e}")))?;
                Ok((u.clone(), RootProvider::new_http(url)))
            })
            .collect::<Result<Vec<_>, ChainError>>()?;
        Ok(Self {
            name: name.to_owned(),
            chain_id,
            providers,
            preferred: AtomicUsize::new(0),
        })
    }

    /// The chain's name, as metrics and logs call it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `call` on the preferred endpoint, then on each other one, until one answers.
    async fn rpc<T, F, Fut>(&self, what: &str, call: F) -> Result<T, ChainError>
    where
        F: Fn(RootProvider) -> Fut,
        Fut: std::future::Future<Output = RpcResult<T>>,
    {
        let n = self.providers.len();
        let first = self.preferred.load(Ordering::Relaxed) % n;
        let mut last = String::new();
        for i in 0..n {
            let idx = (first + i) % n;
            let (url, provider) = &self.providers[idx];
            match call(provider.clone()).await {
                Ok(v) => {
                    self.preferred.store(idx, Ordering::Relaxed);
                    return Ok(v);
                }
                Err(e) => {
                    tracing::debug!(chain = %self.name, %url, call = what, error = %e, "RPC call failed");
                    last = format!("{url}: {e}");
                }
            }
        }
        Err(ChainError::Rpc {
            chain: self.name.clone(),
            call: what.to_owned(),
            last,
        })
    }

    fn bad_answer(&self, call: &str, reason: impl Into<String>) -> ChainError {
        ChainError::BadAnswer {
            chain: self.name.clone(),
            call: call.to_owned(),
            reason: reason.into(),
        }
    }

    /// Checks that every endpoint serves the configured chain (a source and a target swapped
    /// in the settings would otherwise sign packets for the wrong chain).
    pub async fn check_chain_id(&self) -> Result<(), ChainError> {
        let id = self
            .rpc("eth_chainId", |p| async move { p.get_chain_id().await })
            .await?;
        if id != self.chain_id {
            return Err(ChainError::Config {
                chain: self.name.clone(),
                reason: format!(
                    "the RPC endpoint serves chain id {id}, the configuration says {}",
                    self.chain_id
                ),
            });
        }
        Ok(())
    }

    /// The latest block number.
    pub async fn head(&self) -> Result<u64, ChainError> {
        self.rpc(
            "eth_blockNumber",
            |p| async move { p.get_block_number().await },
        )
        .await
    }

    /// The hash of the canonical block at `number`, if the chain has one.
    pub async fn block_hash(&self, number: u64) -> Result<Option<B256>, ChainError> {
        let block = self
            .rpc("eth_getBlockByNumber", |p| async move {
                p.get_block_by_number(BlockNumberOrTag::Number(number))
                    .await
            })
            .await?;
        Ok(block.map(|b| b.header.hash))
    }

    /// Logs with first topic `topic0`, from `addresses` (any when empty), over
    /// `from..=to`, asked for in ranges of at most [`MAX_LOG_RANGE`] blocks.
    pub async fn logs(
        &self,
        addresses: &[Address],
        topic0: B256,
        from: u64,
        to: u64,
    ) -> Result<Vec<Log>, ChainError> {
        let mut out = Vec::new();
        let mut start = from;
        while start <= to {
            let end = to.min(start.saturating_add(MAX_LOG_RANGE - 1));
            let mut filter = Filter::new()
                .from_block(start)
                .to_block(end)
                .event_signature(topic0);
            if !addresses.is_empty() {
                filter = filter.address(addresses.to_vec());
            }
            let filter = &filter;
            let logs = self
                .rpc("eth_getLogs", |p| async move { p.get_logs(filter).await })
                .await?;
            out.extend(logs);
            if end == u64::MAX {
                break;
            }
            start = end + 1;
        }
        Ok(out)
    }

    /// The receipt of `tx`, if it is mined (on the chain as the endpoint sees it).
    pub async fn receipt(&self, tx: B256) -> Result<Option<TransactionReceipt>, ChainError> {
        self.rpc("eth_getTransactionReceipt", |p| async move {
            p.get_transaction_receipt(tx).await
        })
        .await
    }

    /// Whether the endpoint knows `tx` at all (mined or waiting in its pool).
    pub async fn transaction_known(&self, tx: B256) -> Result<bool, ChainError> {
        let found = self
            .rpc("eth_getTransactionByHash", |p| async move {
                p.get_transaction_by_hash(tx).await
            })
            .await?;
        Ok(found.is_some())
    }

    async fn eth_call(&self, what: &str, to: Address, data: Bytes) -> Result<Bytes, ChainError> {
        let req = TransactionRequest::default().to(to).input(data.into());
        let req = &req;
        self.rpc(what, |p| async move { p.call(req.clone()).await })
            .await
    }

    /// `hashLookup(headerHash, payloadHash, dvn)` on the receive library.
    pub async fn hash_lookup(
        &self,
        receive_library: Address,
        header_hash: B256,
        payload_hash: B256,
        dvn: Address,
    ) -> Result<Verification, ChainError> {
        let data = abi::hashLookupCall {
            headerHash: header_hash,
            payloadHash: payload_hash,
            dvn,
        }
        .abi_encode();
        let out = self
            .eth_call("hashLookup", receive_library, data.into())
            .await?;
        let r = abi::hashLookupCall::abi_decode_returns(&out)
            .map_err(|e| self.bad_answer("hashLookup", e.to_string()))?;
        Ok(Verification {
            submitted: r.submitted,
            confirmations: r.confirmations,
        })
    }

    /// `getUlnConfig(receiver, srcEid)` on the receive library: the receiver's effective
    /// configuration for packets from `src_eid`.
    pub async fn uln_config(
        &self,
        receive_library: Address,
        receiver: Address,
        src_eid: u32,
    ) -> Result<UlnConfig, ChainError> {
        let data = abi::getUlnConfigCall {
            oapp: receiver,
            remoteEid: src_eid,
        }
        .abi_encode();
        let out = self
            .eth_call("getUlnConfig", receive_library, data.into())
            .await?;
        let c = abi::getUlnConfigCall::abi_decode_returns(&out)
            .map_err(|e| self.bad_answer("getUlnConfig", e.to_string()))?;
        Ok(UlnConfig {
            confirmations: c.confirmations,
            required_dvns: c.requiredDVNs,
            optional_dvns: c.optionalDVNs,
        })
    }

    /// Builds and signs a call of `data` to `to` from `signer`'s account with `nonce`:
    /// EIP-1559 fees when the chain reports a base fee, a legacy (EIP-155) gas price
    /// otherwise; the gas limit is the estimate with its margin, capped (see [`gas_limit`]).
    pub async fn sign_call<S: Signer>(
        &self,
        signer: &S,
        to: Address,
        data: Bytes,
        nonce: u64,
        gas: GasPolicy,
    ) -> Result<SignedTx, ChainError> {
        let from = signer.address();
        let estimate_req = TransactionRequest::default()
            .from(from)
            .to(to)
            .input(data.clone().into());
        let estimate_req = &estimate_req;
        let estimate = self
            .rpc("eth_estimateGas", |p| async move {
                p.estimate_gas(estimate_req.clone()).await
            })
            .await?;
        let gas_limit = gas_limit(estimate, gas);
        let latest = self
            .rpc("eth_getBlockByNumber", |p| async move {
                p.get_block_by_number(BlockNumberOrTag::Latest).await
            })
            .await?
            .ok_or_else(|| self.bad_answer("eth_getBlockByNumber", "no latest block"))?;
        let sign_err = |source| ChainError::Signing {
            chain: self.name.clone(),
            source,
        };
        let envelope: TxEnvelope = if let Some(base_fee) = latest.header.base_fee_per_gas {
            let tip = self
                .rpc("eth_maxPriorityFeePerGas", |p| async move {
                    p.get_max_priority_fee_per_gas().await
                })
                .await?;
            let tx = TxEip1559 {
                chain_id: self.chain_id,
                nonce,
                gas_limit,
                // Room for the base fee to double before the transaction stops being
                // includable.
                max_fee_per_gas: u128::from(base_fee) * 2 + tip,
                max_priority_fee_per_gas: tip,
                to: TxKind::Call(to),
                value: U256::ZERO,
                access_list: Default::default(),
                input: data,
            };
            let sig = signer
                .sign_digest(tx.signature_hash())
                .await
                .map_err(sign_err)?;
            tx.into_signed(to_alloy_signature(&sig)).into()
        } else {
            let gas_price = self
                .rpc("eth_gasPrice", |p| async move { p.get_gas_price().await })
                .await?;
            let tx = TxLegacy {
                chain_id: Some(self.chain_id),
                nonce,
                gas_price,
                gas_limit,
                to: TxKind::Call(to),
                value: U256::ZERO,
                input: data,
            };
            let sig = signer
                .sign_digest(tx.signature_hash())
                .await
                .map_err(sign_err)?;
            tx.into_signed(to_alloy_signature(&sig)).into()
        };
        Ok(SignedTx {
            hash: *envelope.tx_hash(),
            nonce,
            gas_limit,
            raw: envelope.encoded_2718().into(),
        })
    }

    /// The account's next nonce counting its transactions waiting in the pool.
    pub async fn pending_nonce(&self, account: Address) -> Result<u64, ChainError> {
        self.rpc("eth_getTransactionCount", |p| async move {
            p.get_transaction_count(account).pending().await
        })
        .await
    }

    /// Broadcasts a signed transaction. An endpoint that already knows it answers with an
    /// error some nodes word as "already known": that is a success here.
    pub async fn broadcast(&self, tx: &SignedTx) -> Result<(), ChainError> {
        let raw = &tx.raw;
        let sent = self
            .rpc("eth_sendRawTransaction", |p| async move {
                p.send_raw_transaction(raw).await.map(|_| ())
            })
            .await;
        match sent {
            Err(ChainError::Rpc { ref last, .. })
                if last.contains("already known") || last.contains("AlreadyKnown") =>
            {
                Ok(())
            }
            other => other,
        }
    }

    /// Polls for the receipt of `tx` every `interval` until `timeout`.
    pub async fn wait_receipt(
        &self,
        tx: B256,
        interval: Duration,
        timeout: Duration,
    ) -> Result<Option<TransactionReceipt>, ChainError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match self.receipt(tx).await {
                Ok(Some(r)) => return Ok(Some(r)),
                Ok(None) => {}
                Err(e) => tracing::debug!(chain = %self.name, error = %e, "waiting for a receipt"),
            }
            if tokio::time::Instant::now() + interval > deadline {
                return Ok(None);
            }
            tokio::time::sleep(interval).await;
        }
    }
}

/// Our signature in alloy's form.
fn to_alloy_signature(sig: &crate::signer::EthSignature) -> alloy::primitives::Signature {
    alloy::primitives::Signature::new(
        U256::from_be_bytes(sig.r().0),
        U256::from_be_bytes(sig.s().0),
        sig.y_parity(),
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::signer::key_file::KeyFileSigner;

    #[test]
    fn the_gas_limit_is_the_estimate_plus_a_fifth_capped() {
        let policy = GasPolicy {
            max_gas: 1_000_000,
            margin_percent: 20,
        };
        assert_eq!(gas_limit(100_000, policy), 120_000);
        assert_eq!(gas_limit(900_000, policy), 1_000_000);
        assert_eq!(gas_limit(u64::MAX, policy), 1_000_000);
    }

    #[test]
    fn a_client_needs_a_parsable_url() {
        let err = ChainClient::new("src", 1, &[]).unwrap_err();
        assert!(err.to_string().contains("no RPC URL"), "{err}");
        let err = ChainClient::new("src", 1, &["not a url".into()]).unwrap_err();
        assert!(err.to_string().contains("not a url"), "{err}");
    }

    #[tokio::test]
    async fn an_endpoint_that_does_not_answer_is_an_rpc_error_naming_the_call() {
        // Bound and never listening: connections are refused.
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let url = format!("http://{}", socket.local_addr().unwrap());
        let chain = ChainClient::new("src", 1, &[url]).unwrap();
        let err = chain.head().await.unwrap_err();
        assert!(matches!(err, ChainError::Rpc { .. }), "{err}");
        assert!(err.to_string().contains("eth_blockNumber"), "{err}");
    }

    #[test]
    fn our_signature_converts_with_its_parity() {
        let key = k256::ecdsa::SigningKey::random(&mut rand_core::OsRng);
        let signer = KeyFileSigner::from_key(key);
        let tx = TxLegacy {
            chain_id: Some(1030),
            nonce: 3,
            gas_price: 1,
            gas_limit: 21_000,
            to: TxKind::Call(Address::ZERO),
            value: U256::ZERO,
            input: Bytes::new(),
        };
        let digest = tx.signature_hash();
        let sig = futures_lite_block_on(signer.sign_digest(digest)).unwrap();
        let alloy_sig = to_alloy_signature(&sig);
        let recovered = alloy_sig.recover_address_from_prehash(&digest).unwrap();
        assert_eq!(recovered, signer.address());
    }

    fn futures_lite_block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }
}
