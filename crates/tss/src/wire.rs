//! The byte-level face of a protocol run: what a transport moves between parties.
//!
//! A protocol sees typed `round_based` messages; a transport sees [`Outgoing`] and
//! [`Incoming`] with opaque payloads and party indices. This module converts between the two,
//! so the party daemon can wrap payloads in its protected envelopes without knowing any
//! protocol.

use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use cggmp21::round_based::{self, MessageDestination, MessageType};
use futures::channel::mpsc::{UnboundedReceiver, UnboundedSender};
use futures::{Sink, Stream, StreamExt};
use serde::{de::DeserializeOwned, Serialize};

use crate::codec;

/// A message a party hands to its transport.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    /// `None` for a broadcast to every other party of the run.
    pub receiver: Option<u16>,
    /// The encoded protocol message; the transport must not look inside.
    pub payload: Vec<u8>,
}

/// A message the transport delivers to a party, already authenticated as coming from `sender`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incoming {
    /// The sender's index in the run.
    pub sender: u16,
    /// Whether the sender broadcast it to every party (rather than sending it to this one):
    /// protocols treat the two kinds differently.
    pub broadcast: bool,
    /// The sender's [`Outgoing::payload`], unchanged.
    pub payload: Vec<u8>,
}

/// One party's ends of a protocol run's transport.
#[derive(Debug)]
pub struct Channel {
    /// Messages from the other parties, as the transport delivers them.
    pub incoming: UnboundedReceiver<Incoming>,
    /// Messages for the transport to send.
    pub outgoing: UnboundedSender<Outgoing>,
}

impl Channel {
    /// A channel over the two ends a transport provides.
    pub fn new(incoming: UnboundedReceiver<Incoming>, outgoing: UnboundedSender<Outgoing>) -> Self {
        Self { incoming, outgoing }
    }
}

/// Why the transport failed a run. The sender of a payload that does not decode is named, so
/// the session can blame it.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// A payload is not a message of the protocol being run: its sender misbehaved.
    #[error("message from party index {sender} does not decode: {reason}")]
    Malformed {
        /// The index of the party that sent it.
        sender: u16,
        /// The decoder's complaint.
        reason: String,
    },
    /// A message of ours could not be encoded (a bug, not a peer's fault).
    #[error("message to party index {receiver} does not encode: {reason}")]
    Encode {
        /// The index it was for (`u16::MAX` for a broadcast).
        receiver: u16,
        /// The encoder's complaint.
        reason: String,
    },
    /// The transport dropped its end before the run finished.
    #[error("the transport closed")]
    Closed,
}

/// Parties named by a transport failure of a run, shared between the adapter and the caller.
#[derive(Debug, Clone, Default)]
pub(crate) struct Blame(Arc<Mutex<Vec<u16>>>);

impl Blame {
    fn record(&self, index: u16) {
        if let Ok(mut blamed) = self.0.lock() {
            if !blamed.contains(&index) {
                blamed.push(index);
            }
        }
    }

    pub(crate) fn take(&self) -> Vec<u16> {
        self.0
            .lock()
            .map(|mut b| std::mem::take(&mut *b))
            .unwrap_or_default()
    }
}

/// Typed delivery over a [`Channel`] for protocol message type `M`.
pub(crate) fn delivery<M>(
    channel: Channel,
    blame: Blame,
) -> (IncomingAdapter<M>, OutgoingAdapter<M>)
where
    M: Serialize + DeserializeOwned,
{
    (
        IncomingAdapter {
            inner: channel.incoming,
            next_id: 0,
            blame,
            _msg: PhantomData,
        },
        OutgoingAdapter {
            inner: channel.outgoing,
            _msg: PhantomData,
        },
    )
}

pub(crate) struct IncomingAdapter<M> {
    inner: UnboundedReceiver<Incoming>,
    next_id: u64,
    blame: Blame,
    _msg: PhantomData<fn() -> M>,
}

impl<M: DeserializeOwned> Stream for IncomingAdapter<M> {
    type Item = Result<round_based::Incoming<M>, WireError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        match this.inner.poll_next_unpin(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Ready(Some(message)) => {
                let id = this.next_id;
                this.next_id += 1;
                let item = match codec::decode::<M>(&message.payload) {
                    Ok(msg) => Ok(round_based::Incoming {
                        id,
                        sender: message.sender,
                        msg_type: if message.broadcast {
                            MessageType::Broadcast
                        } else {
                            MessageType::P2P
                        },
                        msg,
                    }),
                    Err(e) => {
                        this.blame.record(message.sender);
                        Err(WireError::Malformed {
                            sender: message.sender,
                            reason: e.to_string(),
                        })
                    }
                };
                Poll::Ready(Some(item))
            }
        }
    }
}

pub(crate) struct OutgoingAdapter<M> {
    inner: UnboundedSender<Outgoing>,
    _msg: PhantomData<fn(M)>,
}

impl<M: Serialize> Sink<round_based::Outgoing<M>> for OutgoingAdapter<M> {
    type Error = WireError;

    fn poll_ready(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn start_send(self: Pin<&mut Self>, item: round_based::Outgoing<M>) -> Result<(), Self::Error> {
        let receiver = match item.recipient {
            MessageDestination::AllParties => None,
            MessageDestination::OneParty(i) => Some(i),
        };
        let payload = codec::encode(&item.msg).map_err(|e| WireError::Encode {
            receiver: receiver.unwrap_or(u16::MAX),
            reason: e.to_string(),
        })?;
        self.inner
            .unbounded_send(Outgoing { receiver, payload })
            .map_err(|_| WireError::Closed)
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn poll_close(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }
}
