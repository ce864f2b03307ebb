//! Settings of what Purser tells other systems: the RabbitMQ publisher (`PURSER_AMQP_*`),
//! outbound webhooks (`PURSER_WEBHOOK_*`), `inventory.low`'s threshold and the origins
//! browsers may call from (`PURSER_CORS_ORIGINS`).

use std::time::Duration;

use purser_api_core::config::{ConfigError, redact_url};
use purser_integrations::Mapper;
use purser_integrations::amqp::{AmqpConfig, DEFAULT_EXCHANGE};
use purser_integrations::webhooks::WebhookConfig;

use super::number;

#[derive(Debug, Clone)]
pub struct Integrations {
    /// None unless `PURSER_AMQP_URL` is set: nothing is published then.
    pub amqp: Option<AmqpConfig>,
    pub webhooks: WebhookConfig,
    /// Exact origins (`https://shop.example.com`) browsers may call the API from. Empty: none.
    pub cors_origins: Vec<String>,
}

impl Integrations {
    pub fn from_lookup(get: &impl Fn(&str) -> Option<String>) -> Result<Integrations, ConfigError> {
        let low_stock = number(get, "PURSER_INVENTORY_LOW_THRESHOLD", 5, 1, 1_000_000)? as i64;
        let mapper = Mapper { low_stock };
        let amqp = match get("PURSER_AMQP_URL").filter(|s| !s.trim().is_empty()) {
            None => None,
            Some(url) => Some(amqp(get, url.trim(), mapper)?),
        };
        let webhooks = WebhookConfig {
            allow_private: flag(get, "PURSER_WEBHOOK_ALLOW_PRIVATE")?,
            timeout: Duration::from_millis(number(
                get,
                "PURSER_WEBHOOK_TIMEOUT_MS",
                10_000,
                100,
                60_000,
            )?),
            retry_base: Duration::from_millis(number(
                get,
                "PURSER_WEBHOOK_RETRY_BASE_MS",
                10_000,
                10,
                3_600_000,
            )?),
            retry_window: Duration::from_secs(number(
                get,
                "PURSER_WEBHOOK_RETRY_WINDOW_SECS",
                86_400,
                1,
                7 * 86_400,
            )?),
            disable_after: Duration::from_secs(number(
                get,
                "PURSER_WEBHOOK_DISABLE_AFTER_SECS",
                86_400,
                1,
                30 * 86_400,
            )?),
            retention: Duration::from_secs(
                86_400 * number(get, "PURSER_WEBHOOK_RETENTION_DAYS", 30, 1, 3650)?,
            ),
            mapper,
        };
        Ok(Integrations {
            amqp,
            webhooks,
            cors_origins: cors_origins(get)?,
        })
    }
}

fn amqp(
    get: &impl Fn(&str) -> Option<String>,
    url: &str,
    mapper: Mapper,
) -> Result<AmqpConfig, ConfigError> {
    if url.starts_with("amqps://") {
        return Err(ConfigError(
            "PURSER_AMQP_URL: amqps:// (TLS) is not supported by this build; use amqp:// \
             (on a private network, or through a TLS-terminating proxy)"
                .into(),
        ));
    }
    if !url.starts_with("amqp://") || purser_integrations::amqp::check_url(url).is_err() {
        return Err(ConfigError(format!(
            "PURSER_AMQP_URL must be an AMQP URL like amqp://user:password@127.0.0.1:5672/%2f, not {:?}",
            redact_url(url)
        )));
    }
    let exchange = get("PURSER_AMQP_EXCHANGE")
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| DEFAULT_EXCHANGE.into());
    if exchange.len() > 127
        || !exchange
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':'))
    {
        return Err(ConfigError(
            "PURSER_AMQP_EXCHANGE must be at most 127 letters, digits, '.', '-', '_' or ':'".into(),
        ));
    }
    let timeout =
        Duration::from_millis(number(get, "PURSER_AMQP_TIMEOUT_MS", 10_000, 100, 300_000)?);
    Ok(AmqpConfig {
        url: url.to_owned(),
        exchange,
        timeout,
        mapper,
    })
}

fn flag(get: &impl Fn(&str) -> Option<String>, var: &str) -> Result<bool, ConfigError> {
    match get(var).as_deref().map(str::trim) {
        None | Some("") | Some("false") | Some("0") => Ok(false),
        Some("true") | Some("1") => Ok(true),
        Some(other) => Err(ConfigError(format!(
            "{var} must be true or false, not {:?}",
            other.chars().take(20).collect::<String>()
        ))),
    }
}

/// `PURSER_CORS_ORIGINS`: a comma-separated list of origins, each scheme://host[:port] with
/// nothing after. No wildcard: the API takes bearer tokens, and a page on any origin that can
/// call it with a user's token is what CORS exists to prevent.
fn cors_origins(get: &impl Fn(&str) -> Option<String>) -> Result<Vec<String>, ConfigError> {
    let Some(raw) = get("PURSER_CORS_ORIGINS") else {
        return Ok(vec![]);
    };
    let mut origins = Vec::new();
    for origin in raw.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let valid = (origin.starts_with("https://") || origin.starts_with("http://"))
            && origin.split_once("://").is_some_and(|(_, rest)| {
                !rest.is_empty()
                    && !rest.contains('/')
                    && !rest.contains('*')
                    && !rest.contains('@')
            });
        if !valid {
            return Err(ConfigError(format!(
                "PURSER_CORS_ORIGINS must list origins like https://shop.example.com (scheme, host, \
                 optional port; no path, no wildcard), not {:?}",
                origin.chars().take(80).collect::<String>()
            )));
        }
        origins.push(origin.trim_end_matches('/').to_owned());
    }
    if origins.len() > 100 {
        return Err(ConfigError(
            "PURSER_CORS_ORIGINS lists more than 100 origins".into(),
        ));
    }
    Ok(origins)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn with(vars: &[(&str, &str)]) -> Result<Integrations, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Integrations::from_lookup(&|k: &str| map.get(k).cloned())
    }

    #[test]
    fn everything_is_off_by_default() {
        let c = with(&[]).unwrap();
        assert!(c.amqp.is_none());
        assert!(c.cors_origins.is_empty());
        assert!(!c.webhooks.allow_private);
        assert_eq!(c.webhooks.retry_window, Duration::from_secs(86_400));
    }

    #[test]
    fn amqp_and_cors_settings_are_checked() {
        let c = with(&[("PURSER_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2f")]).unwrap();
        assert_eq!(c.amqp.unwrap().exchange, DEFAULT_EXCHANGE);
        let e = with(&[("PURSER_AMQP_URL", "http://user:secretpw@x")])
            .unwrap_err()
            .0;
        assert!(
            e.contains("PURSER_AMQP_URL must be") && !e.contains("secretpw"),
            "{e}"
        );
        assert!(
            with(&[("PURSER_AMQP_URL", "amqps://h")])
                .unwrap_err()
                .0
                .contains("amqps")
        );
        let c = with(&[(
            "PURSER_CORS_ORIGINS",
            "https://shop.example.com, http://localhost:3000",
        )])
        .unwrap();
        assert_eq!(
            c.cors_origins,
            ["https://shop.example.com", "http://localhost:3000"]
        );
        for bad in [
            "*",
            "https://*.example.com",
            "shop.example.com",
            "https://x.com/path",
        ] {
            assert!(with(&[("PURSER_CORS_ORIGINS", bad)]).is_err(), "{bad}");
        }
        assert!(with(&[("PURSER_WEBHOOK_ALLOW_PRIVATE", "yes")]).is_err());
    }
}
