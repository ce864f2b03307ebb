//! Who is asking, and why: the metadata every appended event carries.

use purser_event_store::Metadata;
use uuid::Uuid;

/// The origin of a command. Flows into every event it appends (as metadata), and from there
/// into every command a process manager sends in reaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandContext {
    pub correlation_id: Uuid,
    pub causation_id: Option<Uuid>,
    /// `customer:<id>`, `admin:<id>`, `system:<component>`.
    pub actor: String,
    pub idempotency_key: Option<String>,
    pub trace_id: Option<String>,
    /// When set, event ids are derived from it (the n-th event of this command gets
    /// `derive_id([command_id, n])`), so sending the same command again appends nothing.
    pub command_id: Option<Uuid>,
}

impl CommandContext {
    /// A fresh context for a request.
    pub fn new(actor: impl Into<String>) -> CommandContext {
        CommandContext {
            correlation_id: Uuid::now_v7(),
            causation_id: None,
            actor: actor.into(),
            idempotency_key: None,
            trace_id: None,
            command_id: None,
        }
    }

    pub fn system(component: &str) -> CommandContext {
        CommandContext::new(format!("system:{component}"))
    }

    /// Makes the command idempotent under `key`: its events get ids derived from the key and
    /// the command's target, so a retry with the same key appends nothing.
    pub fn idempotent(mut self, key: &str, scope: &str) -> CommandContext {
        self.idempotency_key = Some(key.to_owned());
        self.command_id = Some(purser_domain::derive_id(&["command", scope, key]));
        self
    }

    pub fn metadata(&self) -> Metadata {
        Metadata {
            correlation_id: Some(self.correlation_id),
            causation_id: self.causation_id,
            actor: Some(self.actor.clone()),
            idempotency_key: self.idempotency_key.clone(),
            trace_id: self.trace_id.clone(),
        }
    }

    /// The id of the `n`-th event this command appends.
    pub fn event_id(&self, n: usize) -> Uuid {
        match self.command_id {
            Some(c) => purser_domain::derive_id(&["event", &c.to_string(), &n.to_string()]),
            None => Uuid::now_v7(),
        }
    }
}
