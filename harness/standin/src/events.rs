//! Server events fanned out to WebSocket clients (2.1+) and long-poll waiters (2.0).
//! // Duplicati/WebserverCore/Notifications/WebsocketAccessor.cs; @2.0 Duplicati/Server/EventPollNotify.cs

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Mutex;

use async_std::channel::{self, Receiver, Sender};
use serde_json::Value;

#[derive(Debug, Clone)]
pub enum Event {
    /// A task finished; the data is its GetTaskStateDto.
    TaskCompleted(Value),
    /// Something in the server state changed (task started, queue changed).
    StatusChanged,
}

#[derive(Default)]
pub struct Events {
    subscribers: Mutex<Vec<Sender<Event>>>,
    last_event_id: AtomicI64,
}

impl Events {
    pub fn subscribe(&self) -> Receiver<Event> {
        // Bounded so a stuck client cannot grow memory; a full queue drops that client's events.
        let (tx, rx) = channel::bounded(64);
        self.subscribers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(tx);
        rx
    }

    pub fn publish(&self, e: Event) {
        self.last_event_id.fetch_add(1, Ordering::SeqCst);
        let mut subs = self.subscribers.lock().unwrap_or_else(|p| p.into_inner());
        subs.retain(|tx| !tx.is_closed());
        for tx in subs.iter() {
            let _ = tx.try_send(e.clone());
        }
    }

    pub fn last_event_id(&self) -> i64 {
        self.last_event_id.load(Ordering::SeqCst)
    }
}
