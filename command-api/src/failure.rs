//! Why a command-side operation did not go through, independent of the wire.

use purser_domain::{DomainError, ValueError};
use purser_event_store::StoreError;

use crate::bus::CommandError;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    /// The caller's request was refused: bad input, a rule, a lost race.
    #[error("{message}")]
    Rejected {
        field: Option<&'static str>,
        code: String,
        message: String,
    },
    /// The event store failed; nothing was written by the failing step.
    #[error(transparent)]
    Store(StoreError),
}

impl Failure {
    pub fn rejected(
        field: Option<&'static str>,
        code: &str,
        message: impl Into<String>,
    ) -> Failure {
        Failure::Rejected {
            field,
            code: code.to_owned(),
            message: message.into(),
        }
    }
}

impl Failure {
    /// A database the command side needs (credentials, sessions) could not be used.
    pub fn database(e: sqlx::Error) -> Failure {
        Failure::Store(StoreError::Unavailable(format!("database: {e}")))
    }

    /// Something that should not fail did; the caller sees a generic error.
    pub fn internal(message: impl Into<String>) -> Failure {
        Failure::Store(StoreError::Backend(message.into()))
    }
}

impl From<ValueError> for Failure {
    fn from(e: ValueError) -> Failure {
        Failure::rejected(Some(e.field), "INVALID_INPUT", e.to_string())
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Failure {
        Failure::Store(e)
    }
}

impl<E: DomainError> From<CommandError<E>> for Failure {
    fn from(e: CommandError<E>) -> Failure {
        match e {
            CommandError::Domain(d) => Failure::rejected(d.field(), d.code(), d.to_string()),
            CommandError::Conflict { .. } => Failure::rejected(None, "CONFLICT", e.to_string()),
            CommandError::Store(s) => Failure::Store(s),
        }
    }
}
