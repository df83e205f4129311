//! Events the driver emits: command monitoring here; pool (CMAP) and discovery (SDAM) events
//! come from their machines and are re-exported. Applications observe them through an
//! [`EventHandler`]; the conformance suite turns them into transcripts.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bson::Document;

use crate::error::Error;
use crate::options::ServerAddress;

/// A command was sent.
#[derive(Clone, Debug)]
pub struct CommandStartedEvent {
    pub command_name: String,
    pub database_name: String,
    /// The command as sent, document sequences folded in.
    pub command: Document,
    pub request_id: i32,
    pub address: ServerAddress,
    /// The pool's id of the connection.
    pub connection_id: u64,
}

/// A command succeeded.
#[derive(Clone, Debug)]
pub struct CommandSucceededEvent {
    pub command_name: String,
    pub database_name: String,
    pub reply: Document,
    pub request_id: i32,
    pub address: ServerAddress,
    pub connection_id: u64,
    pub duration: Duration,
}

/// A command failed (an error reply, or a network error).
#[derive(Clone, Debug)]
pub struct CommandFailedEvent {
    pub command_name: String,
    pub database_name: String,
    pub failure: Error,
    pub request_id: i32,
    pub address: ServerAddress,
    pub connection_id: u64,
    pub duration: Duration,
}

/// A command monitoring event.
#[derive(Clone, Debug)]
pub enum CommandEvent {
    Started(CommandStartedEvent),
    Succeeded(CommandSucceededEvent),
    Failed(CommandFailedEvent),
}

/// Any event the driver emits.
#[derive(Clone, Debug)]
pub enum Event {
    Command(CommandEvent),
    Cmap(crate::cmap::CmapEvent),
    Sdam(crate::sdam::SdamEvent),
}

/// Receives events. Called synchronously on the task that caused the event: keep it quick.
#[derive(Clone)]
pub struct EventHandler(Arc<dyn Fn(&Event) + Send + Sync>);

impl EventHandler {
    /// An event handler calling `f`.
    pub fn new(f: impl Fn(&Event) + Send + Sync + 'static) -> Self {
        EventHandler(Arc::new(f))
    }

    /// Delivers an event.
    pub fn handle(&self, event: &Event) {
        (self.0)(event)
    }
}

impl fmt::Debug for EventHandler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EventHandler")
    }
}
