//! An in-process transport: every party of a run in one process, messages moved by a router
//! future. For tests and for measuring the protocols without a network.

use futures::channel::mpsc;
use futures::stream::{select_all, StreamExt};
use futures::Future;

use crate::wire::{Channel, Incoming};

/// Channels for `n` parties and the future that routes between them; poll the router
/// alongside the parties. It ends when every party has dropped its channel.
pub fn network(n: u16) -> (Vec<Channel>, impl Future<Output = ()> + Send) {
    let mut channels = Vec::with_capacity(usize::from(n));
    let mut inboxes = Vec::with_capacity(usize::from(n));
    let mut outboxes = Vec::with_capacity(usize::from(n));
    for i in 0..n {
        let (in_tx, in_rx) = mpsc::unbounded();
        let (out_tx, out_rx) = mpsc::unbounded();
        channels.push(Channel::new(in_rx, out_tx));
        inboxes.push(in_tx);
        outboxes.push(out_rx.map(move |m| (i, m)));
    }
    let router = async move {
        let mut outgoing = select_all(outboxes);
        while let Some((sender, message)) = outgoing.next().await {
            let deliver = |to: usize, broadcast: bool| {
                if let Some(inbox) = inboxes.get(to) {
                    // A party that already finished has dropped its inbox; nothing to deliver.
                    let _ = inbox.unbounded_send(Incoming {
                        sender,
                        broadcast,
                        payload: message.payload.clone(),
                    });
                }
            };
            match message.receiver {
                Some(to) => deliver(usize::from(to), false),
                None => (0..inboxes.len())
                    .filter(|&to| to != usize::from(sender))
                    .for_each(|to| deliver(to, true)),
            }
        }
    };
    (channels, router)
}
