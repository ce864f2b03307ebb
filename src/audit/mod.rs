//! Auditor tooling: export and import of the event log, tamper evidence (the sealer and the
//! verifier), and the replay of every read model into a scratch database. The GraphQL side
//! (stream history, state as of a past point) lives in `purser-query-api`'s `audit` module.
//! docs/audit.md is the auditor's walkthrough.

pub mod cli;
pub mod export;
pub mod import;
pub mod progress;
pub mod replay;
pub mod seal;
pub mod verify;

pub use export::{ExportFilter, ExportSummary, ExportedEvent, export};
pub use import::{ImportSummary, import};
pub use progress::{Progress, ProgressEvery};
pub use replay::{ReplayOptions, ReplayReport, TableComparison, replay};
pub use seal::{Sealer, SealerOptions};
pub use verify::{Check, Finding, VerifyReport, verify};
