//! Running an operation: select a server, check out a connection, send, parse, and on failure
//! tell discovery (SDAM) about it and retry once where the operation's declared
//! [`Retryability`] and the retry rules allow.

use bson::{Document, RawDocumentBuf};

use super::topology::{ErrorPhase, SelectedServer};
use super::Client;
use crate::error::{Error, ErrorKind, Result};
use crate::event::{
    CommandEvent, CommandFailedEvent, CommandStartedEvent, CommandSucceededEvent, Event,
};
use crate::operation::{
    check_ok, KillCursors, Operation, Retryability, WriteCommand, WriteOutcome,
};
use crate::options::{ReadPreference, ServerAddress};

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
        let write = !op.is_read();
        let target = |deprioritized| Target::Select {
            read_preference: rp.as_ref(),
            write,
            deprioritized,
        };
        let first = target(None);
        let retry_reads = self.inner.options.effective_retry_reads();
        let mut first_server = None;
        match self.run_attempt(&mut op, first, &mut first_server).await {
            Ok(out) => Ok(out),
            Err(e) if may_retry(op.retryability(), retry_reads, &e) => {
                let again = target(first_server.as_ref());
                self.run_once(&mut op, again).await
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
        let read_preference = server.read_preference_to_send(op.read_preference(), op.is_read());
        let mut command = op.build(&description)?;
        if let Some(rp) = &read_preference {
            command.set_read_preference(rp);
        }
        let connection_id = conn.id();
        let generation = conn.generation();
        let request_id = crate::conn::next_request_id();
        let started = self.inner.runtime.now();
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
        let duration = self.inner.runtime.now().saturating_duration_since(started);
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

/// Whether an operation that failed with `error` is tried once more: only as its
/// [`Retryability`] declares, and only after an error its rules call retryable. (Retryable
/// writes are not implemented yet: an operation declaring [`Retryability::Write`] is not
/// retried.)
fn may_retry(retryability: Retryability, retry_reads: bool, error: &Error) -> bool {
    match retryability {
        Retryability::Read => retry_reads && error.is_read_retryable(),
        Retryability::Write | Retryability::None => false,
    }
}
