//! What cqrs-es needs to persist events: an aggregate type and an event type, neither of
//! which does anything here.

use std::convert::Infallible;

use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The aggregate cqrs-es needs a type for; only `TYPE` matters to `persist`.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(super) struct BenchOrder;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct BenchEvent(Value);

impl DomainEvent for BenchEvent {
    fn event_type(&self) -> String {
        "BenchEvent".into()
    }
    fn event_version(&self) -> String {
        "1".into()
    }
}

impl Aggregate for BenchOrder {
    const TYPE: &'static str = "order";
    type Command = ();
    type Event = BenchEvent;
    type Error = Infallible;
    type Services = ();

    async fn handle(
        &mut self,
        _command: (),
        _services: &(),
        _sink: &cqrs_es::event_sink::EventSink<Self>,
    ) -> Result<(), Infallible> {
        Ok(())
    }

    fn apply(&mut self, _event: BenchEvent) {}
}
