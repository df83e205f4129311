//! Running an operation: select a server, check out a connection, send, parse, and on failure
//! tell discovery (SDAM) about it and retry once where the retryable-reads rules allow.

use std::time::Instant;

use bson::{Document, RawDocumentBuf};

use super::topology::{ErrorPhase, SelectedServer};
use super::Client;
use crate::error::{Error, ErrorKind, Result};
use crate::event::{
    CommandEvent, CommandFailedEvent, CommandStartedEvent, CommandSucceededEvent, Event,
};
use crate::operation::{check_ok, KillCursors, Operation, WriteCommand, WriteOutcome};
use crate::options::{ReadPreference, ServerAddress};

/// Codes after which a read may be retried (retryable reads spec).
const RETRYABLE_READ_CODES: &[i32] = &[
    11600, 11602, 10107, 13435, 13436, 189, 91, 7, 6, 89, 9001, 262, 134,
];

/// Commands whose bodies are redacted in events (command monitoring spec).
const SENSITIVE: &[&str] = &[
    "authenticate",
    "saslstart",
    "saslcontinue",
    "getnonce",
    "createuser",
    "updateuser",
    "copydbgetnonce",
    "copydbsaslstart",
    "copydb",
];

fn is_sensitive(name: &str) -> bool {
    SENSITIVE.iter().any(|s| s.eq_ignore_ascii_case(name))
}

fn is_retryable_read_error(error: &Error) -> bool {
    match error.kind() {
        ErrorKind::Io(_) | ErrorKind::ConnectionPoolCleared { .. } => true,
        ErrorKind::Command(c) => RETRYABLE_READ_CODES.contains(&c.code),
        _ => false,
    }
}

/// Where an operation should run.
pub(crate) enum Target<'a> {
    /// Select a server: for a read by its read preference (`None`: the primary), else a
    /// writable one.
    Select {
        read_preference: Option<&'a ReadPreference>,
        write: bool,
        /// The server a failed first attempt ran on: a retry avoids it in sharded clusters.
        deprioritized: Option<&'a ServerAddress>,
    },
    /// The server a cursor lives on.
    Pinned(&'a ServerAddress),
}

impl Client {
    /// Runs `op` on a server chosen by its read preference (or the primary).
    pub(crate) async fn execute<O: Operation>(&self, op: O) -> Result<O::Output> {
        self.execute_with_address(op).await.map(|(_, out)| out)
    }

    /// Like [`execute`](Self::execute), also returning the server it ran on (for cursors).
    pub(crate) async fn execute_with_address<O: Operation>(
        &self,
        mut op: O,
    ) -> Result<(ServerAddress, O::Output)> {
        let rp = op.read_preference().cloned();
        let read = is_read(&op);
        let target = |deprioritized| Target::Select {
            read_preference: rp.as_ref(),
            write: !read,
            deprioritized,
        };
        let retry = self.inner.options.retry_reads != Some(false) && read;
        let mut first_server = None;
        match self
            .run_attempt(&mut op, target(None), &mut first_server)
            .await
        {
            Ok(out) => Ok(out),
            Err(e) if retry && is_retryable_read_error(&e) => {
                self.run_once(&mut op, target(first_server.as_ref())).await
            }
            Err(e) => Err(e),
        }
    }

    /// Runs `op` on the server at `address` (getMore, killCursors).
    pub(crate) async fn execute_on<O: Operation>(
        &self,
        address: &ServerAddress,
        mut op: O,
    ) -> Result<O::Output> {
        self.run_once(&mut op, Target::Pinned(address))
            .await
            .map(|(_, out)| out)
    }

    /// Runs every batch of a write; an ordered write stops after the first batch with errors.
    pub(crate) async fn execute_write(&self, op: &mut WriteCommand) -> Result<Vec<WriteOutcome>> {
        let mut outcomes = Vec::new();
        while op.has_more() {
            let target = Target::Select {
                read_preference: None,
                write: true,
                deprioritized: None,
            };
            let (_, outcome) = self.run_once(op, target).await?;
            let failed = !outcome.write_errors.is_empty();
            outcomes.push(outcome);
            if failed && op.ordered {
                op.abandon();
            }
        }
        Ok(outcomes)
    }

    /// Kills a cursor without blocking: spawned on the client's runtime. Errors are ignored
    /// (the server times out abandoned cursors anyway).
    pub(crate) fn kill_cursor_in_background(
        &self,
        address: ServerAddress,
        db: String,
        collection: String,
        id: i64,
    ) {
        if self.inner.topology.is_closed() {
            return;
        }
        let client = self.clone();
        let op = KillCursors {
            db,
            collection,
            cursor_ids: vec![id],
        };
        self.inner.runtime.spawn(Box::pin(async move {
            let _ = client.execute_on(&address, op).await;
        }));
    }

    async fn select(&self, target: &Target<'_>) -> Result<SelectedServer> {
        match target {
            Target::Select {
                read_preference,
                write,
                deprioritized,
            } => {
                self.inner
                    .topology
                    .select_server(
                        *read_preference,
                        *write,
                        deprioritized.map(std::slice::from_ref).unwrap_or_default(),
                    )
                    .await
            }
            Target::Pinned(address) => self.inner.topology.server(address).ok_or_else(|| {
                Error::new(ErrorKind::ServerSelection {
                    message: format!("the server {address} that holds the cursor is gone"),
                })
            }),
        }
    }

    /// One attempt: select, check out, send, parse.
    async fn run_once<O: Operation>(
        &self,
        op: &mut O,
        target: Target<'_>,
    ) -> Result<(ServerAddress, O::Output)> {
        self.run_attempt(op, target, &mut None).await
    }

    /// [`run_once`](Self::run_once), noting in `selected` the server it selected when it fails
    /// (a retry avoids it).
    async fn run_attempt<O: Operation>(
        &self,
        op: &mut O,
        target: Target<'_>,
        selected: &mut Option<ServerAddress>,
    ) -> Result<(ServerAddress, O::Output)> {
        let server = self.select(&target).await?;
        let address = server.address.clone();
        let mut conn = match server.pool.check_out().await {
            Ok(c) => c,
            Err(e) => {
                self.inner.topology.handle_application_error(
                    &address,
                    &e,
                    None,
                    ErrorPhase::BeforeHandshake,
                );
                *selected = Some(address);
                return Err(e);
            }
        };
        let description = conn
            .shared_description()
            .ok_or_else(|| Error::internal("checked-out connection has no handshake"))?;
        let read_preference = server.read_preference_to_send(op.read_preference(), is_read(op));
        let mut command = op.build(&description)?;
        if let Some(rp) = &read_preference {
            command.set_read_preference(rp);
        }
        let connection_id = conn.id();
        let generation = conn.generation();
        let request_id = crate::conn::next_request_id();
        let started = Instant::now();
        self.emit(|| {
            let mut doc = command.to_document();
            if is_sensitive(command.name()) {
                doc = Document::new();
            }
            Event::Command(CommandEvent::Started(CommandStartedEvent {
                command_name: command.name().to_string(),
                database_name: command.target_db.to_string(),
                command: doc,
                request_id,
                address: address.clone(),
                connection_id,
            }))
        });
        let result: Result<RawDocumentBuf> = match conn.send_command(&command, request_id).await {
            Ok(reply) if command.more_to_come => Ok(reply),
            Ok(reply) => check_ok(&reply).map(|_| reply),
            Err(e) => Err(e),
        };
        // Back to the pool only if the exchange completed cleanly; a dropped future never gets
        // here, so its connection is closed by the pool.
        if conn.is_clean() {
            conn.mark_reusable();
        } else {
            conn.mark_unusable();
        }
        let duration = started.elapsed();
        match result {
            Ok(reply) => {
                self.emit(|| {
                    let doc = if is_sensitive(command.name()) || command.more_to_come {
                        Document::new()
                    } else {
                        crate::wire::raw::to_document(&reply).unwrap_or_default()
                    };
                    let doc = if command.more_to_come {
                        bson::doc! { "ok": 1 }
                    } else {
                        doc
                    };
                    Event::Command(CommandEvent::Succeeded(CommandSucceededEvent {
                        command_name: command.name().to_string(),
                        database_name: command.target_db.to_string(),
                        reply: doc,
                        request_id,
                        address: address.clone(),
                        connection_id,
                        duration,
                    }))
                });
                drop(conn);
                // The command borrows from `op`, which parses the reply.
                drop(command);
                let out = op.handle_response(reply, &description)?;
                Ok((address, out))
            }
            Err(e) => {
                self.emit(|| {
                    Event::Command(CommandEvent::Failed(CommandFailedEvent {
                        command_name: command.name().to_string(),
                        database_name: command.target_db.to_string(),
                        failure: e.clone(),
                        request_id,
                        address: address.clone(),
                        connection_id,
                        duration,
                    }))
                });
                drop(conn);
                self.inner.topology.handle_application_error(
                    &address,
                    &e,
                    Some(generation),
                    ErrorPhase::AfterHandshake,
                );
                *selected = Some(address);
                Err(e)
            }
        }
    }
}

fn is_read<O: Operation>(op: &O) -> bool {
    matches!(
        op.name(),
        "find"
            | "getMore"
            | "aggregate"
            | "count"
            | "distinct"
            | "listCollections"
            | "listIndexes"
            | "listDatabases"
    ) || op.read_preference().is_some()
}
