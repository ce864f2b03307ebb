//! Configuration primitives every part of Purser reads its settings with: a secret that does
//! not print, one error type, and one URL check.

use std::fmt;

/// A secret string (a password, API key, signing secret, a URL with credentials). Its `Debug`
/// is redacted and it has no `Display`, so it cannot end up in a log line by accident;
/// [`Secret::expose`] is the one way to read it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(\"[redacted]\")")
    }
}

/// A configuration mistake, as one sentence naming the variable at fault. Secrets are never
/// repeated in it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// Checks a base URL setting: http or https, a host, and no credentials, query or fragment
/// (a base URL gets paths appended, and credentials would end up in logs and links). Returns
/// it without a trailing slash.
pub fn http_base_url(var: &str, raw: &str, example: &str) -> Result<String, ConfigError> {
    let raw = raw.trim();
    let bad = || {
        ConfigError(format!(
            "{var} must be an http(s) URL without credentials, query or fragment, such as \
             {example}, not {:?}",
            redact_url(raw)
        ))
    };
    let url = url::Url::parse(raw).map_err(|_| bad())?;
    let plain = url.username().is_empty()
        && url.password().is_none()
        && url.query().is_none()
        && url.fragment().is_none();
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() || !plain {
        return Err(bad());
    }
    Ok(raw.trim_end_matches('/').to_owned())
}

/// Masks the password in a URL (`postgres://user:***@host/db`) and shortens anything that
/// does not look like one, for messages.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.chars().take(80).collect();
    };
    match rest.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or_default();
            if userinfo.contains(':') {
                format!("{scheme}://{user}:***@{host}")
            } else {
                format!("{scheme}://{user}@{host}")
            }
        }
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_are_plain_http_and_lose_their_trailing_slash() {
        assert_eq!(
            http_base_url("X", "https://api.stripe.com/", "e").unwrap(),
            "https://api.stripe.com"
        );
        for bad in [
            "api.stripe.com",
            "ftp://x.test",
            "https://u:p@x.test",
            "https://x.test/?a=1",
            "https://x.test/#f",
        ] {
            let e = http_base_url("X", bad, "e").unwrap_err().0;
            assert!(e.starts_with("X must be an http(s) URL"), "{e}");
            assert!(!e.contains(":p@"), "a password is never echoed: {e}");
        }
    }

    #[test]
    fn secrets_and_url_passwords_are_not_printed() {
        assert_eq!(
            format!("{:?}", Secret::new("hunter2")),
            "Secret(\"[redacted]\")"
        );
        assert_eq!(
            redact_url("postgres://u:hunter2@db/x"),
            "postgres://u:***@db/x"
        );
        assert_eq!(redact_url("postgres://u@db/x"), "postgres://u@db/x");
    }
}
