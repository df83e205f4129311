//! `run_command`: any command document, reply returned as is.

use bson::{Document, RawDocumentBuf};

use super::{Command, Operation};
use crate::error::{Error, Result};
use crate::operation::StreamDescription;
use crate::options::ReadPreference;

/// Runs an arbitrary command against a database.
#[derive(Debug, Clone)]
pub struct RunCommand {
    db: String,
    command: Document,
    read_preference: Option<ReadPreference>,
}

impl RunCommand {
    /// `command` against `db`. An empty command is an invalid argument.
    pub fn new(
        db: impl Into<String>,
        command: Document,
        read_preference: Option<ReadPreference>,
    ) -> Result<Self> {
        if command.is_empty() {
            return Err(Error::invalid_argument(
                "a command document must not be empty",
            ));
        }
        Ok(RunCommand {
            db: db.into(),
            command,
            read_preference,
        })
    }
}

impl Operation for RunCommand {
    type Output = RawDocumentBuf;

    fn name(&self) -> &str {
        self.command.keys().next().map(String::as_str).unwrap_or("")
    }

    // Never retried (the default): the driver cannot know whether a command it did not write
    // is safe to run twice.

    /// A command given a read preference selects its server by it, as a read does (run-command
    /// spec); without one it goes to the primary.
    fn is_read(&self) -> bool {
        self.read_preference.is_some()
    }

    fn build(&mut self, _description: &StreamDescription) -> Result<Command<'_>> {
        Ok(Command::borrowed(&self.db, &self.command))
    }

    /// The reply as received: its contents are not validated yet (the caller validates it once,
    /// as it converts or hands it out).
    fn handle_response(
        &mut self,
        response: RawDocumentBuf,
        _description: &StreamDescription,
    ) -> Result<RawDocumentBuf> {
        Ok(response)
    }

    fn read_preference(&self) -> Option<&ReadPreference> {
        self.read_preference.as_ref()
    }
}
