//! Automatic persisted queries (Apollo's APQ): a client sends only the SHA-256 of a document
//! (`extensions.persistedQuery.sha256Hash`); a server that knows it runs it, one that does not
//! answers `PersistedQueryNotFound`, and the client sends the document with its hash once to
//! register it. A short hash fits in a GET's URL, so queries go as GETs a CDN can cache.
//!
//! Registration happens only for documents admission let in, and the store is bounded by
//! bytes and by entries (oldest out first): a client can fill it with valid documents, never
//! grow it. Lost entries cost one round trip, since clients re-register on
//! `PersistedQueryNotFound`. async-graphql's own APQ extension is not used: it runs after
//! parsing, where admission must already have seen the document, and its LRU cache is bounded
//! by entries, not bytes.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};

/// At most this many bytes of documents are kept.
pub const MAX_BYTES: usize = 8 * 1024 * 1024;
/// At most this many documents are kept.
pub const MAX_ENTRIES: usize = 10_000;

/// Why a persisted-query request cannot run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApqError {
    /// The hash is unknown: send the document with it.
    NotFound,
    /// The document's SHA-256 is not the hash sent with it.
    HashMismatch,
    /// Not `{"version": 1, "sha256Hash": "<64 hex>"}`.
    Malformed,
}

impl ApqError {
    pub fn code(&self) -> &'static str {
        match self {
            ApqError::NotFound => "PERSISTED_QUERY_NOT_FOUND",
            ApqError::HashMismatch | ApqError::Malformed => "BAD_PERSISTED_QUERY",
        }
    }

    /// The message Apollo clients look for.
    pub fn message(&self) -> &'static str {
        match self {
            ApqError::NotFound => "PersistedQueryNotFound",
            ApqError::HashMismatch => "provided sha256Hash does not match the query",
            ApqError::Malformed => {
                "persistedQuery must be {\"version\": 1, \"sha256Hash\": \"<64 hex digits>\"}"
            }
        }
    }
}

#[derive(Default)]
struct Store {
    documents: HashMap<String, Arc<str>>,
    order: VecDeque<String>,
    bytes: usize,
}

/// The process's persisted documents.
#[derive(Clone, Default)]
pub struct PersistedQueries {
    store: Arc<Mutex<Store>>,
}

/// The hash a request's `persistedQuery` extension names, if it has one.
pub fn requested_hash(extension: Option<serde_json::Value>) -> Result<Option<String>, ApqError> {
    let Some(ext) = extension else {
        return Ok(None);
    };
    let version = ext.get("version").and_then(|v| v.as_u64());
    let hash = ext.get("sha256Hash").and_then(|v| v.as_str());
    match (version, hash) {
        (Some(1), Some(h)) if h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()) => {
            Ok(Some(h.to_ascii_lowercase()))
        }
        _ => Err(ApqError::Malformed),
    }
}

impl PersistedQueries {
    /// The document to run: `query` itself when it is given (checked against `hash`), else
    /// the stored one.
    pub fn resolve(&self, hash: &str, query: &str) -> Result<String, ApqError> {
        if !query.is_empty() {
            let actual = hex::encode(Sha256::digest(query.as_bytes()));
            return if actual == hash {
                Ok(query.to_owned())
            } else {
                Err(ApqError::HashMismatch)
            };
        }
        let store = self.store.lock().expect("persisted queries");
        store
            .documents
            .get(hash)
            .map(|d| d.to_string())
            .ok_or(ApqError::NotFound)
    }

    /// Keeps an admitted document under its hash, dropping the oldest past the bounds.
    pub fn register(&self, hash: &str, query: &str) {
        if query.len() > MAX_BYTES {
            return;
        }
        let mut store = self.store.lock().expect("persisted queries");
        if store.documents.contains_key(hash) {
            return;
        }
        while store.bytes + query.len() > MAX_BYTES || store.documents.len() >= MAX_ENTRIES {
            let Some(oldest) = store.order.pop_front() else {
                break;
            };
            if let Some(d) = store.documents.remove(&oldest) {
                store.bytes -= d.len();
            }
        }
        store.bytes += query.len();
        store.order.push_back(hash.to_owned());
        store.documents.insert(hash.to_owned(), Arc::from(query));
    }

    pub fn len(&self) -> usize {
        self.store
            .lock()
            .expect("persisted queries")
            .documents
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash(q: &str) -> String {
        hex::encode(Sha256::digest(q.as_bytes()))
    }

    #[test]
    fn unknown_then_registered_then_found() {
        let apq = PersistedQueries::default();
        let q = "{ __typename }";
        assert_eq!(apq.resolve(&hash(q), ""), Err(ApqError::NotFound));
        assert_eq!(apq.resolve(&hash(q), q).as_deref(), Ok(q));
        apq.register(&hash(q), q);
        assert_eq!(apq.resolve(&hash(q), "").as_deref(), Ok(q));
        assert_eq!(apq.resolve(&hash("{ a }"), q), Err(ApqError::HashMismatch));
    }

    #[test]
    fn the_store_is_bounded_by_bytes_and_entries() {
        let apq = PersistedQueries::default();
        let big = "x".repeat(MAX_BYTES / 4 + 1);
        for i in 0..10 {
            let q = format!("{i}{big}");
            apq.register(&hash(&q), &q);
        }
        let store = apq.store.lock().unwrap();
        assert!(store.bytes <= MAX_BYTES);
        assert_eq!(store.documents.len(), 3);
        assert_eq!(store.order.len(), 3);
        drop(store);
        for i in 0..(MAX_ENTRIES + 5) {
            let q = format!("{{ f{i} }}");
            apq.register(&hash(&q), &q);
        }
        assert_eq!(apq.len(), MAX_ENTRIES);
    }

    #[test]
    fn the_extension_must_be_version_1_with_a_sha256() {
        let h = hash("{ a }");
        assert_eq!(requested_hash(None), Ok(None));
        let ok = serde_json::json!({"version": 1, "sha256Hash": h});
        assert_eq!(requested_hash(Some(ok)), Ok(Some(h.clone())));
        for bad in [
            serde_json::json!({"version": 2, "sha256Hash": h}),
            serde_json::json!({"version": 1, "sha256Hash": "abc"}),
        ] {
            assert_eq!(requested_hash(Some(bad)), Err(ApqError::Malformed));
        }
    }
}
