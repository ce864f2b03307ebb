//! Licenses of digital products.
//!
//! - [`LicensePool`], stream `licensepool-<SKU>`: the keys an admin loaded for a SKU, handed
//!   out first-loaded first-issued. A key is never allocated twice.
//! - [`License`], stream `license-<uuid>`: one issued license (product, order, customer, seats,
//!   key), attached to the customer's account and revoked on refund.
//! - [`LicensePayload`]: the bytes the command side signs with Ed25519 for signed licenses.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

use crate::{
    Aggregate, CustomerId, DomainError, Event, LicenseId, OrderId, Sku, ValueError, bounded_text,
};

// ---------------------------------------------------------------------------------------------
// License pool

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LicensePoolState {
    pub sku: Option<Sku>,
    /// Keys not yet handed out, oldest first.
    pub available: VecDeque<String>,
    /// Every key ever loaded, so a key loaded twice is only kept once.
    pub known: BTreeSet<String>,
    /// The key each license got, so a repeated allocation is recognised.
    pub allocated: BTreeMap<LicenseId, String>,
    /// Licenses whose allocation found the pool empty; retrying them changes nothing.
    pub exhausted_for: BTreeSet<LicenseId>,
}

#[derive(Debug, Clone, PartialEq, strum::IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum LicensePoolCommand {
    LoadKeys { sku: Sku, keys: Vec<String>, now: DateTime<Utc> },
    Allocate { sku: Sku, license_id: LicenseId, order_id: OrderId, now: DateTime<Utc> },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum LicensePoolEvent {
    /// Only the keys that were new.
    LicenseKeysLoaded { sku: Sku, keys: Vec<String>, at: DateTime<Utc> },
    LicenseKeyAllocated {
        sku: Sku,
        license_id: LicenseId,
        order_id: OrderId,
        key: String,
        at: DateTime<Utc>,
    },
    /// The pool had no key left. A fact, not an error, so checkout can compensate.
    LicensePoolExhausted { sku: Sku, license_id: LicenseId, order_id: OrderId, at: DateTime<Utc> },
}

impl Event for LicensePoolEvent {
    event_names!(LicenseKeysLoaded, LicenseKeyAllocated, LicensePoolExhausted);
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LicensePoolError {
    #[error("this is the pool of SKU {expected}, not {got}")]
    SkuMismatch { expected: Sku, got: Sku },
    #[error("at most {} keys can be loaded at once", LicensePool::MAX_KEYS_PER_LOAD)]
    TooManyKeys,
    #[error(transparent)]
    Invalid(#[from] ValueError),
}

impl DomainError for LicensePoolError {
    fn code(&self) -> &'static str {
        match self {
            Self::SkuMismatch { .. } => "SKU_MISMATCH",
            Self::TooManyKeys => "TOO_MANY_KEYS",
            Self::Invalid(_) => "INVALID_INPUT",
        }
    }

    fn field(&self) -> Option<&'static str> {
        match self {
            Self::SkuMismatch { .. } => Some("sku"),
            Self::TooManyKeys => Some("keys"),
            Self::Invalid(e) => Some(e.field),
        }
    }
}

pub struct LicensePool;

impl LicensePool {
    pub const MAX_KEY_LEN: usize = 200;
    pub const MAX_KEYS_PER_LOAD: usize = 10_000;

    /// A pool key: 1 to 200 printable characters, no surrounding whitespace.
    pub fn parse_key(raw: &str) -> Result<String, ValueError> {
        let key = raw.trim();
        if key.is_empty() || key.chars().count() > Self::MAX_KEY_LEN {
            let msg = format!("each key must be 1 to {} characters", Self::MAX_KEY_LEN);
            return Err(ValueError::new("keys", msg));
        }
        if key.chars().any(char::is_control) {
            return Err(ValueError::new("keys", "keys must be printable"));
        }
        Ok(key.to_owned())
    }

    fn check_sku(state: &LicensePoolState, sku: &Sku) -> Result<(), LicensePoolError> {
        match &state.sku {
            Some(expected) if expected != sku => {
                Err(LicensePoolError::SkuMismatch { expected: expected.clone(), got: sku.clone() })
            }
            _ => Ok(()),
        }
    }
}

impl Aggregate for LicensePool {
    const CATEGORY: &'static str = "licensepool";
    type Id = Sku;
    type State = LicensePoolState;
    type Command = LicensePoolCommand;
    type Event = LicensePoolEvent;
    type Error = LicensePoolError;

    fn decide(
        state: &LicensePoolState,
        command: LicensePoolCommand,
    ) -> Result<Vec<LicensePoolEvent>, LicensePoolError> {
        use LicensePoolEvent::*;
        match command {
            LicensePoolCommand::LoadKeys { sku, keys, now } => {
                Self::check_sku(state, &sku)?;
                if keys.len() > Self::MAX_KEYS_PER_LOAD {
                    return Err(LicensePoolError::TooManyKeys);
                }
                let mut seen = BTreeSet::new();
                let mut new_keys = Vec::new();
                for raw in keys {
                    let key = Self::parse_key(&raw)?;
                    if !state.known.contains(&key) && seen.insert(key.clone()) {
                        new_keys.push(key);
                    }
                }
                if new_keys.is_empty() {
                    return Ok(vec![]);
                }
                Ok(vec![LicenseKeysLoaded { sku, keys: new_keys, at: now }])
            }
            LicensePoolCommand::Allocate { sku, license_id, order_id, now } => {
                Self::check_sku(state, &sku)?;
                if state.allocated.contains_key(&license_id)
                    || state.exhausted_for.contains(&license_id)
                {
                    return Ok(vec![]);
                }
                Ok(vec![match state.available.front() {
                    Some(key) => {
                        LicenseKeyAllocated { sku, license_id, order_id, key: key.clone(), at: now }
                    }
                    None => LicensePoolExhausted { sku, license_id, order_id, at: now },
                }])
            }
        }
    }

    fn evolve(mut state: LicensePoolState, event: &LicensePoolEvent) -> LicensePoolState {
        use LicensePoolEvent::*;
        match event {
            LicenseKeysLoaded { sku, keys, .. } => {
                state.sku = Some(sku.clone());
                for key in keys {
                    if state.known.insert(key.clone()) {
                        state.available.push_back(key.clone());
                    }
                }
            }
            LicenseKeyAllocated { sku, license_id, key, .. } => {
                state.sku = Some(sku.clone());
                state.available.retain(|k| k != key);
                state.known.insert(key.clone());
                state.allocated.insert(*license_id, key.clone());
            }
            LicensePoolExhausted { sku, license_id, .. } => {
                state.sku = Some(sku.clone());
                state.exhausted_for.insert(*license_id);
            }
        }
        state
    }
}

// ---------------------------------------------------------------------------------------------
// License

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LicenseState {
    pub issued: bool,
    pub license_id: LicenseId,
    pub sku: Option<Sku>,
    pub order_id: OrderId,
    pub customer_id: CustomerId,
    pub seats: u32,
    pub key: String,
    pub expires_at: Option<DateTime<Utc>>,
    pub attached_to: Option<CustomerId>,
    pub revoked: bool,
    /// The license could not be issued; it never will be.
    #[serde(default)]
    pub failed: bool,
}

#[derive(Debug, Clone, PartialEq, strum::IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum LicenseCommand {
    Issue {
        license_id: LicenseId,
        sku: Sku,
        order_id: OrderId,
        customer_id: CustomerId,
        seats: u32,
        key: String,
        expires_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    },
    Attach {
        customer_id: CustomerId,
        now: DateTime<Utc>,
    },
    Revoke {
        reason: String,
        now: DateTime<Utc>,
    },
    /// The license could not be issued (no signing key configured, say). Recorded as a fact
    /// so the checkout compensates exactly as it does for an empty pool.
    RecordIssueFailure {
        license_id: LicenseId,
        sku: Sku,
        order_id: OrderId,
        reason: String,
        now: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum LicenseEvent {
    LicenseIssued {
        license_id: LicenseId,
        sku: Sku,
        order_id: OrderId,
        customer_id: CustomerId,
        seats: u32,
        key: String,
        expires_at: Option<DateTime<Utc>>,
        at: DateTime<Utc>,
    },
    LicenseAttached {
        license_id: LicenseId,
        customer_id: CustomerId,
        order_id: OrderId,
        at: DateTime<Utc>,
    },
    LicenseRevoked {
        license_id: LicenseId,
        order_id: OrderId,
        reason: String,
        at: DateTime<Utc>,
    },
    LicenseIssueFailed {
        license_id: LicenseId,
        sku: Sku,
        order_id: OrderId,
        reason: String,
        at: DateTime<Utc>,
    },
}

impl Event for LicenseEvent {
    event_names!(LicenseIssued, LicenseAttached, LicenseRevoked, LicenseIssueFailed);
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LicenseError {
    #[error("no such license")]
    NotFound,
    #[error("the license has been revoked")]
    Revoked,
    #[error("the license is attached to another account")]
    AttachedElsewhere,
    #[error(transparent)]
    Invalid(#[from] ValueError),
}

impl DomainError for LicenseError {
    fn code(&self) -> &'static str {
        match self {
            Self::NotFound => "LICENSE_NOT_FOUND",
            Self::Revoked => "LICENSE_REVOKED",
            Self::AttachedElsewhere => "ALREADY_ATTACHED_ELSEWHERE",
            Self::Invalid(_) => "INVALID_INPUT",
        }
    }

    fn field(&self) -> Option<&'static str> {
        match self {
            Self::AttachedElsewhere => Some("customer_id"),
            Self::Invalid(e) => Some(e.field),
            _ => None,
        }
    }
}

pub struct License;

impl License {
    /// Signed keys carry the payload and an Ed25519 signature, so they are longer than pool keys.
    pub const MAX_KEY_LEN: usize = 4096;
}

impl Aggregate for License {
    const CATEGORY: &'static str = "license";
    type Id = LicenseId;
    type State = LicenseState;
    type Command = LicenseCommand;
    type Event = LicenseEvent;
    type Error = LicenseError;

    fn decide(
        state: &LicenseState,
        command: LicenseCommand,
    ) -> Result<Vec<LicenseEvent>, LicenseError> {
        use LicenseEvent::*;
        match command {
            LicenseCommand::Issue {
                license_id,
                sku,
                order_id,
                customer_id,
                seats,
                key,
                expires_at,
                now,
            } => {
                if state.issued {
                    return Ok(vec![]);
                }
                if seats == 0 {
                    return Err(ValueError::new("seats", "must be at least 1").into());
                }
                let key = bounded_text("key", &key, Self::MAX_KEY_LEN, true)?;
                Ok(vec![LicenseIssued {
                    license_id,
                    sku,
                    order_id,
                    customer_id,
                    seats,
                    key,
                    expires_at,
                    at: now,
                }])
            }
            LicenseCommand::Attach { customer_id, now } => {
                if !state.issued {
                    return Err(LicenseError::NotFound);
                }
                match state.attached_to {
                    Some(owner) if owner == customer_id => Ok(vec![]),
                    Some(_) => Err(LicenseError::AttachedElsewhere),
                    None if state.revoked => Err(LicenseError::Revoked),
                    None => Ok(vec![LicenseAttached {
                        license_id: state.license_id,
                        customer_id,
                        order_id: state.order_id,
                        at: now,
                    }]),
                }
            }
            LicenseCommand::Revoke { reason, now } => {
                if !state.issued {
                    return Err(LicenseError::NotFound);
                }
                if state.revoked {
                    return Ok(vec![]);
                }
                Ok(vec![LicenseRevoked {
                    license_id: state.license_id,
                    order_id: state.order_id,
                    reason: bounded_text("reason", &reason, 500, false)?,
                    at: now,
                }])
            }
            LicenseCommand::RecordIssueFailure { license_id, sku, order_id, reason, now } => {
                // Once issued (or once failed) there is nothing more to record.
                if state.issued || state.failed {
                    return Ok(vec![]);
                }
                Ok(vec![LicenseIssueFailed {
                    license_id,
                    sku,
                    order_id,
                    reason: bounded_text("reason", &reason, 500, true)?,
                    at: now,
                }])
            }
        }
    }

    fn evolve(mut state: LicenseState, event: &LicenseEvent) -> LicenseState {
        use LicenseEvent::*;
        match event {
            LicenseIssued {
                license_id,
                sku,
                order_id,
                customer_id,
                seats,
                key,
                expires_at,
                ..
            } => {
                state = LicenseState {
                    issued: true,
                    license_id: *license_id,
                    sku: Some(sku.clone()),
                    order_id: *order_id,
                    customer_id: *customer_id,
                    seats: *seats,
                    key: key.clone(),
                    expires_at: *expires_at,
                    attached_to: None,
                    revoked: false,
                    failed: false,
                };
            }
            LicenseAttached { customer_id, .. } => state.attached_to = Some(*customer_id),
            LicenseRevoked { .. } => state.revoked = true,
            LicenseIssueFailed { license_id, sku, order_id, .. } => {
                state.license_id = *license_id;
                state.sku = Some(sku.clone());
                state.order_id = *order_id;
                state.failed = true;
            }
        }
        state
    }
}

// ---------------------------------------------------------------------------------------------
// Signed license payload

/// What a signed license key asserts. The command side signs [`LicensePayload::signing_bytes`]
/// with Ed25519; anyone holding the public key can verify a license offline by rebuilding the
/// same bytes from the payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LicensePayload {
    pub license_id: LicenseId,
    pub sku: Sku,
    pub customer_id: CustomerId,
    pub seats: u32,
    pub expires_at: Option<DateTime<Utc>>,
}

impl LicensePayload {
    /// The canonical bytes to sign: compact UTF-8 JSON with the keys in alphabetical order and
    /// a format version, e.g.
    ///
    /// ```text
    /// {"customer_id":"<uuid>","expires_at":"2026-03-01T12:00:00Z","license_id":"<uuid>","seats":1,"sku":"AV-1Y","v":1}
    /// ```
    ///
    /// Ids are lower-case hyphenated UUIDs; `expires_at` is RFC 3339 in UTC with a `Z` suffix
    /// and only as many fractional digits as the instant has (none for a whole second), or
    /// `null`. The object is written by hand rather than through a JSON map, so the key order
    /// cannot change with serde_json's features.
    pub fn signing_bytes(&self) -> Vec<u8> {
        let expires_at = match self.expires_at {
            Some(at) => format!("\"{}\"", at.to_rfc3339_opts(SecondsFormat::AutoSi, true)),
            None => "null".to_owned(),
        };
        // A SKU is only letters, digits, '-', '_' and '.', so it needs no JSON escaping.
        format!(
            "{{\"customer_id\":\"{}\",\"expires_at\":{},\"license_id\":\"{}\",\"seats\":{},\"sku\":\"{}\",\"v\":1}}",
            self.customer_id.as_uuid().hyphenated(),
            expires_at,
            self.license_id.as_uuid().hyphenated(),
            self.seats,
            self.sku.as_str(),
        )
        .into_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::testing::given;
    use crate::test_support::{sku, t};

    fn lid(n: &str) -> LicenseId {
        LicenseId::derived(&["test-license", n])
    }

    fn oid() -> OrderId {
        OrderId::derived(&["test-order"])
    }

    fn cid(n: &str) -> CustomerId {
        CustomerId::derived(&["test-customer", n])
    }

    fn loaded(keys: &[&str]) -> LicensePoolEvent {
        LicensePoolEvent::LicenseKeysLoaded {
            sku: sku("AV-1Y"),
            keys: keys.iter().map(|k| k.to_string()).collect(),
            at: t(0),
        }
    }

    fn load(keys: &[&str]) -> LicensePoolCommand {
        LicensePoolCommand::LoadKeys {
            sku: sku("AV-1Y"),
            keys: keys.iter().map(|k| k.to_string()).collect(),
            now: t(0),
        }
    }

    fn allocate(n: &str) -> LicensePoolCommand {
        LicensePoolCommand::Allocate {
            sku: sku("AV-1Y"),
            license_id: lid(n),
            order_id: oid(),
            now: t(1),
        }
    }

    fn allocated(n: &str, key: &str) -> LicensePoolEvent {
        LicensePoolEvent::LicenseKeyAllocated {
            sku: sku("AV-1Y"),
            license_id: lid(n),
            order_id: oid(),
            key: key.into(),
            at: t(1),
        }
    }

    #[test]
    fn loading_keeps_only_new_keys() {
        given::<LicensePool>([]).when(load(&["K1", " K2 ", "K1"])).then([loaded(&["K1", "K2"])]);
        given::<LicensePool>([loaded(&["K1"])]).when(load(&["K1", "K3"])).then([loaded(&["K3"])]);
        given::<LicensePool>([loaded(&["K1"])]).when(load(&["K1"])).then([]);
        // An allocated key loaded again must not come back into the pool.
        given::<LicensePool>([loaded(&["K1"]), allocated("a", "K1")]).when(load(&["K1"])).then([]);
        given::<LicensePool>([]).when(load(&[""])).then_error("INVALID_INPUT");
        given::<LicensePool>([]).when(load(&[&"k".repeat(201)])).then_error("INVALID_INPUT");
        given::<LicensePool>([]).when(load(&["bad\u{7}key"])).then_error("INVALID_INPUT");
    }

    #[test]
    fn allocation_hands_out_each_key_once_in_order() {
        given::<LicensePool>([loaded(&["K1", "K2"])])
            .when(allocate("a"))
            .then([allocated("a", "K1")]);
        given::<LicensePool>([loaded(&["K1", "K2"]), allocated("a", "K1")])
            .when(allocate("b"))
            .then([allocated("b", "K2")]);
        given::<LicensePool>([loaded(&["K1", "K2"]), allocated("a", "K1")])
            .when(allocate("a"))
            .then([]);
        let state =
            given::<LicensePool>([loaded(&["K1", "K2"]), allocated("a", "K1")]).state().clone();
        assert_eq!(state.available, VecDeque::from(["K2".to_string()]));
    }

    #[test]
    fn an_empty_pool_records_exhaustion_once() {
        let exhausted = LicensePoolEvent::LicensePoolExhausted {
            sku: sku("AV-1Y"),
            license_id: lid("b"),
            order_id: oid(),
            at: t(1),
        };
        given::<LicensePool>([loaded(&["K1"]), allocated("a", "K1")])
            .when(allocate("b"))
            .then([exhausted.clone()]);
        given::<LicensePool>([loaded(&["K1"]), allocated("a", "K1"), exhausted])
            .when(allocate("b"))
            .then([]);
        given::<LicensePool>([])
            .when(allocate("a"))
            .result()
            .map(|events| {
                assert!(matches!(events[..], [LicensePoolEvent::LicensePoolExhausted { .. }]))
            })
            .unwrap();
        let other = LicensePoolCommand::Allocate {
            sku: sku("OTHER"),
            license_id: lid("c"),
            order_id: oid(),
            now: t(1),
        };
        given::<LicensePool>([loaded(&["K1"])]).when(other).then_error("SKU_MISMATCH");
    }

    fn issue() -> LicenseCommand {
        LicenseCommand::Issue {
            license_id: lid("a"),
            sku: sku("AV-1Y"),
            order_id: oid(),
            customer_id: cid("ann"),
            seats: 3,
            key: "K1".into(),
            expires_at: Some(t(60 * 24 * 365)),
            now: t(2),
        }
    }

    fn issued() -> LicenseEvent {
        LicenseEvent::LicenseIssued {
            license_id: lid("a"),
            sku: sku("AV-1Y"),
            order_id: oid(),
            customer_id: cid("ann"),
            seats: 3,
            key: "K1".into(),
            expires_at: Some(t(60 * 24 * 365)),
            at: t(2),
        }
    }

    fn attached(who: &str) -> LicenseEvent {
        LicenseEvent::LicenseAttached {
            license_id: lid("a"),
            customer_id: cid(who),
            order_id: oid(),
            at: t(3),
        }
    }

    fn revoked() -> LicenseEvent {
        LicenseEvent::LicenseRevoked {
            license_id: lid("a"),
            order_id: oid(),
            reason: "refunded".into(),
            at: t(4),
        }
    }

    #[test]
    fn issue_once() {
        given::<License>([]).when(issue()).then([issued()]);
        given::<License>([issued()]).when(issue()).then([]);
        let mut no_seats = issue();
        if let LicenseCommand::Issue { seats, .. } = &mut no_seats {
            *seats = 0;
        }
        given::<License>([]).when(no_seats).then_error("INVALID_INPUT");
    }

    #[test]
    fn attach_to_one_account() {
        let attach = |who| LicenseCommand::Attach { customer_id: cid(who), now: t(3) };
        given::<License>([issued()]).when(attach("ann")).then([attached("ann")]);
        given::<License>([issued(), attached("ann")]).when(attach("ann")).then([]);
        given::<License>([issued(), attached("ann")])
            .when(attach("bob"))
            .then_error("ALREADY_ATTACHED_ELSEWHERE");
        given::<License>([issued(), revoked()]).when(attach("ann")).then_error("LICENSE_REVOKED");
        given::<License>([]).when(attach("ann")).then_error("LICENSE_NOT_FOUND");
    }

    #[test]
    fn revoke_once() {
        let revoke = || LicenseCommand::Revoke { reason: "refunded".into(), now: t(4) };
        given::<License>([issued(), attached("ann")]).when(revoke()).then([revoked()]);
        given::<License>([issued(), revoked()]).when(revoke()).then([]);
        given::<License>([]).when(revoke()).then_error("LICENSE_NOT_FOUND");
    }

    #[test]
    fn signing_bytes_are_canonical() {
        let payload = LicensePayload {
            license_id: LicenseId::from(uuid::Uuid::from_u128(1)),
            sku: sku("av-1y"),
            customer_id: CustomerId::from(uuid::Uuid::from_u128(2)),
            seats: 3,
            expires_at: Some(t(0)),
        };
        let expected = concat!(
            r#"{"customer_id":"00000000-0000-0000-0000-000000000002","#,
            r#""expires_at":"2025-03-01T12:00:00Z","#,
            r#""license_id":"00000000-0000-0000-0000-000000000001","#,
            r#""seats":3,"sku":"AV-1Y","v":1}"#
        );
        assert_eq!(String::from_utf8(payload.signing_bytes()).unwrap(), expected);
        // The bytes are valid JSON that reads back into the same payload.
        let back: LicensePayload = serde_json::from_slice(&payload.signing_bytes()).unwrap();
        assert_eq!(back, payload);
        let forever = LicensePayload { expires_at: None, ..payload };
        assert!(
            String::from_utf8(forever.signing_bytes()).unwrap().contains(r#""expires_at":null"#)
        );
    }

    #[test]
    fn an_issue_failure_is_recorded_once_and_never_after_issue() {
        let license_id = LicenseId::derived(&["t", "fail"]);
        let fail = || LicenseCommand::RecordIssueFailure {
            license_id,
            sku: Sku::parse("AV-1").unwrap(),
            order_id: OrderId::derived(&["t", "o"]),
            reason: "no signing key".into(),
            now: DateTime::<Utc>::UNIX_EPOCH,
        };
        let events = License::decide(&LicenseState::default(), fail()).unwrap();
        assert!(matches!(events.as_slice(), [LicenseEvent::LicenseIssueFailed { .. }]));
        let state = License::fold(events.iter());
        assert!(state.failed);
        assert_eq!(License::decide(&state, fail()).unwrap(), vec![]);
    }
}
