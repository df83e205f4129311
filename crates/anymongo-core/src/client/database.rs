//! A database handle.

use std::future::IntoFuture;

use bson::{Document, RawDocumentBuf};

use super::Client;
use crate::conn::handshake::to_document;
use crate::error::Result;
use crate::operation::RunCommand;
use crate::options::{ReadConcern, ReadPreference, WriteConcern};
use crate::rt::BoxFuture;

/// A handle to a database. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Database {
    client: Client,
    name: String,
    pub(crate) read_preference: Option<ReadPreference>,
    pub(crate) read_concern: Option<ReadConcern>,
    pub(crate) write_concern: Option<WriteConcern>,
}

/// Settings a database or collection handle overrides (unset ones are inherited).
#[derive(Clone, Debug, Default)]
pub struct HandleOptions {
    pub read_preference: Option<ReadPreference>,
    pub read_concern: Option<ReadConcern>,
    pub write_concern: Option<WriteConcern>,
}

impl Database {
    pub(crate) fn new(client: Client, name: &str, options: HandleOptions) -> Self {
        let defaults = client.options();
        Database {
            name: name.to_string(),
            read_preference: options
                .read_preference
                .or_else(|| defaults.read_preference.clone()),
            read_concern: options
                .read_concern
                .or_else(|| defaults.read_concern.clone()),
            write_concern: options
                .write_concern
                .or_else(|| defaults.write_concern.clone()),
            client,
        }
    }

    /// The database name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The client this handle belongs to.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The read preference reads through this handle use.
    pub fn read_preference(&self) -> Option<&ReadPreference> {
        self.read_preference.as_ref()
    }

    /// The read concern reads through this handle use.
    pub fn read_concern(&self) -> Option<&ReadConcern> {
        self.read_concern.as_ref()
    }

    /// The write concern writes through this handle use.
    pub fn write_concern(&self) -> Option<&WriteConcern> {
        self.write_concern.as_ref()
    }

    /// A handle to collection `name` of type `T`.
    pub fn collection<T>(&self, name: &str) -> super::Collection<T> {
        super::Collection::new(self.clone(), name, HandleOptions::default())
    }

    /// A handle to collection `name` with overridden settings.
    pub fn collection_with_options<T>(
        &self,
        name: &str,
        options: HandleOptions,
    ) -> super::Collection<T> {
        super::Collection::new(self.clone(), name, options)
    }

    /// Runs a command against this database. Awaiting gives the reply document.
    pub fn run_command(&self, command: Document) -> RunCommandAction<'_> {
        RunCommandAction {
            db: self,
            command,
            read_preference: None,
        }
    }

    /// Runs a command, returning the reply as raw BSON.
    pub async fn run_raw_command(&self, command: Document) -> Result<RawDocumentBuf> {
        let op = RunCommand::new(self.name.clone(), command, None)?;
        self.client.execute(op).await
    }
}

/// The action of [`Database::run_command`].
#[must_use = "actions do nothing unless awaited"]
#[derive(Debug)]
pub struct RunCommandAction<'a> {
    db: &'a Database,
    command: Document,
    read_preference: Option<ReadPreference>,
}

impl RunCommandAction<'_> {
    /// Runs the command on a server chosen by `read_preference`.
    pub fn selection_criteria(mut self, read_preference: ReadPreference) -> Self {
        self.read_preference = Some(read_preference);
        self
    }
}

impl<'a> IntoFuture for RunCommandAction<'a> {
    type Output = Result<Document>;
    type IntoFuture = BoxFuture<'a, Result<Document>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            let op = RunCommand::new(self.db.name.clone(), self.command, self.read_preference)?;
            let raw = self.db.client.execute(op).await?;
            to_document(&raw)
        })
    }
}
