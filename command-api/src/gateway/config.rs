//! Which gateway to use, read from the environment.
//!
//! | variable | meaning | default |
//! |---|---|---|
//! | `PURSER_PAYMENT_GATEWAY` | `simulated` or `stripe` | `simulated` |
//! | `PURSER_SIM_TIMEOUT_DELAY_MS` | how long the simulated gateway waits before a timeout | `2000` |
//! | `PURSER_SIM_TIMEOUTS_BEFORE_SUCCESS` | timeouts of the `pm_card_timeoutThenSucceed` card before it succeeds (`never` for none) | `2` |
//! | `STRIPE_API_KEY` | secret (`sk_…`) or restricted (`rk_…`) key; required for `stripe` | |
//! | `STRIPE_WEBHOOK_SECRET` | the endpoint's signing secret (`whsec_…`); required for `stripe` | |
//! | `STRIPE_API_BASE` | Stripe's API base URL, for test doubles | `https://api.stripe.com` |
//! | `STRIPE_REQUEST_TIMEOUT_MS` | how long one Stripe request may take | `30000` |
//!
//! Empty values count as unset, so `STRIPE_API_KEY=` in a compose file means "not given".
//! Errors are one sentence naming the variable and never repeat a secret's value.

use std::time::Duration;

use purser_api_core::config::{ConfigError, Secret, http_base_url};

use super::simulated::SimulatedGatewayConfig;
use super::stripe::StripeConfig;

/// Which payment gateway to run, with its settings.
#[derive(Debug, Clone)]
pub enum GatewayConfig {
    Simulated(SimulatedGatewayConfig),
    Stripe(StripeConfig),
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig::Simulated(SimulatedGatewayConfig::default())
    }
}

impl GatewayConfig {
    /// Reads the process environment; see the module documentation for the variables.
    pub fn from_env() -> Result<GatewayConfig, ConfigError> {
        GatewayConfig::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the variables through `lookup`, so tests need no real environment.
    pub fn from_lookup(
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<GatewayConfig, ConfigError> {
        let get = |name: &str| {
            lookup(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let kind = get("PURSER_PAYMENT_GATEWAY").unwrap_or_else(|| "simulated".to_owned());
        match kind.to_ascii_lowercase().as_str() {
            "simulated" => {
                let mut config = SimulatedGatewayConfig::default();
                if let Some(raw) = get("PURSER_SIM_TIMEOUT_DELAY_MS") {
                    config.timeout_delay = millis("PURSER_SIM_TIMEOUT_DELAY_MS", &raw, 0)?;
                }
                if let Some(raw) = get("PURSER_SIM_TIMEOUTS_BEFORE_SUCCESS") {
                    config.timeouts_before_success = if raw.eq_ignore_ascii_case("never") {
                        None
                    } else {
                        Some(raw.parse::<u32>().ok().filter(|n| *n <= 1_000).ok_or_else(|| {
                            ConfigError(format!(
                                "PURSER_SIM_TIMEOUTS_BEFORE_SUCCESS must be a whole number from \
                                 0 to 1000 or `never`, not {:?}.",
                                shorten(&raw)
                            ))
                        })?)
                    };
                }
                Ok(GatewayConfig::Simulated(config))
            }
            "stripe" => {
                let api_key = get("STRIPE_API_KEY").ok_or_else(|| {
                    ConfigError(
                        "STRIPE_API_KEY must be set when PURSER_PAYMENT_GATEWAY=stripe.".into(),
                    )
                })?;
                if !(api_key.starts_with("sk_") || api_key.starts_with("rk_")) {
                    // The value is not repeated: it is meant to be a secret.
                    return Err(ConfigError(
                        "STRIPE_API_KEY must be a Stripe secret key (sk_…) or restricted key \
                         (rk_…), not a publishable key."
                            .into(),
                    ));
                }
                let webhook_secret = get("STRIPE_WEBHOOK_SECRET").ok_or_else(|| {
                    ConfigError(
                        "STRIPE_WEBHOOK_SECRET must be set when PURSER_PAYMENT_GATEWAY=stripe \
                         (the whsec_… signing secret of the webhook endpoint)."
                            .into(),
                    )
                })?;
                if !webhook_secret.starts_with("whsec_") {
                    return Err(ConfigError(
                        "STRIPE_WEBHOOK_SECRET must be a webhook signing secret (whsec_…).".into(),
                    ));
                }
                let mut config =
                    StripeConfig::new(Secret::new(api_key), Secret::new(webhook_secret));
                if let Some(raw) = get("STRIPE_API_BASE") {
                    config.base_url =
                        http_base_url("STRIPE_API_BASE", &raw, StripeConfig::DEFAULT_BASE_URL)?;
                }
                if let Some(raw) = get("STRIPE_REQUEST_TIMEOUT_MS") {
                    config.request_timeout = millis("STRIPE_REQUEST_TIMEOUT_MS", &raw, 1)?;
                }
                Ok(GatewayConfig::Stripe(config))
            }
            _ => Err(ConfigError(format!(
                "PURSER_PAYMENT_GATEWAY must be `simulated` or `stripe`, not {:?}.",
                shorten(&kind)
            ))),
        }
    }
}

/// A duration in whole milliseconds, at least `min` and at most ten minutes.
fn millis(name: &str, raw: &str, min: u64) -> Result<Duration, ConfigError> {
    raw.parse::<u64>()
        .ok()
        .filter(|ms| (min..=600_000).contains(ms))
        .map(Duration::from_millis)
        .ok_or_else(|| {
            ConfigError(format!(
                "{name} must be a whole number of milliseconds from {min} to 600000, not {:?}.",
                shorten(raw)
            ))
        })
}

/// Non-secret values are echoed in errors, but never at length.
fn shorten(raw: &str) -> String {
    raw.chars().take(64).collect()
}
