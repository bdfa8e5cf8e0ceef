use std::sync::Arc;

use futures::future::join_all;
use mpc_tss::{local, AuxInfo, Channel, KeyShare, PrimePair, Scheme, TssError};

pub(crate) fn primes(count: usize) -> Vec<PrimePair> {
    let text = include_str!("../../testdata/primes.jsonl");
    let pairs: Vec<_> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| PrimePair::from_bytes(l.as_bytes()).unwrap())
        .collect();
    assert!(
        pairs.len() >= count,
        "testdata/primes.jsonl holds {} pairs, {count} needed",
        pairs.len()
    );
    pairs.into_iter().take(count).collect()
}

/// Runs one protocol for every party of an in-process network, each party on its own task.
pub(crate) async fn run_all<T, F, Fut>(n: u16, party: F) -> Vec<Result<T, TssError>>
where
    T: Send + 'static,
    F: Fn(u16, Channel) -> Fut,
    Fut: std::future::Future<Output = Result<T, TssError>> + Send + 'static,
{
    let (channels, router) = local::network(n);
    let router = tokio::spawn(router);
    let handles: Vec<_> = channels
        .into_iter()
        .zip(0u16..)
        .map(|(ch, i)| tokio::spawn(party(i, ch)))
        .collect();
    let results = join_all(handles)
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
    router.await.unwrap();
    results
}

pub(crate) async fn aux_infos(n: u16, eid: &'static [u8]) -> Vec<Arc<AuxInfo>> {
    let primes = std::sync::Mutex::new(
        primes(usize::from(n))
            .into_iter()
            .map(Some)
            .collect::<Vec<_>>(),
    );
    let primes = Arc::new(primes);
    run_all(n, move |i, ch| {
        let pair = primes.lock().unwrap()[usize::from(i)].take().unwrap();
        async move { mpc_tss::generate_aux_info(eid, i, n, pair, ch).await }
    })
    .await
    .into_iter()
    .map(|r| Arc::new(r.unwrap()))
    .collect()
}

pub(crate) async fn keygen(
    scheme: Scheme,
    t: u16,
    n: u16,
    aux: Option<Vec<Arc<AuxInfo>>>,
) -> Vec<Arc<KeyShare>> {
    let eid: Vec<u8> = format!("keygen-{scheme}-{t}-of-{n}").into_bytes();
    run_all(n, move |i, ch| {
        let aux = aux.as_ref().map(|a| a[usize::from(i)].clone());
        let eid = eid.clone();
        async move { mpc_tss::generate_key(scheme, &eid, i, n, t, aux.as_deref(), ch).await }
    })
    .await
    .into_iter()
    .map(|r| Arc::new(r.unwrap()))
    .collect()
}
