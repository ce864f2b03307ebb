//! Choosing and configuring the payment gateway from environment variables, through a lookup
//! closure so no real environment is touched.

use std::collections::HashMap;
use std::time::Duration;

use purser_command_api::gateway::{GatewayConfig, SimulatedGatewayConfig, StripeConfig};

fn from(vars: &[(&str, &str)]) -> Result<GatewayConfig, String> {
    let vars: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    GatewayConfig::from_lookup(|name| vars.get(name).cloned()).map_err(|e| e.to_string())
}

const STRIPE: [(&str, &str); 3] = [
    ("PURSER_PAYMENT_GATEWAY", "stripe"),
    ("STRIPE_API_KEY", "sk_test_51SecretValue"),
    ("STRIPE_WEBHOOK_SECRET", "whsec_SigningSecretValue"),
];

fn stripe_with(extra: &[(&str, &str)]) -> Result<GatewayConfig, String> {
    let mut vars: Vec<(&str, &str)> = STRIPE.to_vec();
    vars.retain(|(k, _)| !extra.iter().any(|(e, _)| e == k));
    vars.extend_from_slice(extra);
    from(&vars)
}

#[test]
fn the_simulated_gateway_is_the_default() {
    let Ok(GatewayConfig::Simulated(config)) = from(&[]) else {
        panic!("the default is the simulated gateway");
    };
    assert_eq!(config, SimulatedGatewayConfig::default());
    assert_eq!(config.timeout_delay, Duration::from_millis(2_000));
    assert_eq!(config.timeouts_before_success, Some(2));
    // Empty values count as unset.
    assert!(matches!(
        from(&[("PURSER_PAYMENT_GATEWAY", " ")]),
        Ok(GatewayConfig::Simulated(_))
    ));
}

#[test]
fn the_simulated_timeouts_are_configurable() {
    let Ok(GatewayConfig::Simulated(config)) = from(&[
        ("PURSER_PAYMENT_GATEWAY", "Simulated"),
        ("PURSER_SIM_TIMEOUT_DELAY_MS", "25"),
        ("PURSER_SIM_TIMEOUTS_BEFORE_SUCCESS", "5"),
    ]) else {
        panic!("simulated");
    };
    assert_eq!(
        config,
        SimulatedGatewayConfig {
            timeout_delay: Duration::from_millis(25),
            timeouts_before_success: Some(5)
        }
    );
    let Ok(GatewayConfig::Simulated(never)) =
        from(&[("PURSER_SIM_TIMEOUTS_BEFORE_SUCCESS", "never")])
    else {
        panic!("simulated");
    };
    assert_eq!(never.timeouts_before_success, None);

    for (name, value) in [
        ("PURSER_SIM_TIMEOUT_DELAY_MS", "soon"),
        ("PURSER_SIM_TIMEOUT_DELAY_MS", "-1"),
        ("PURSER_SIM_TIMEOUT_DELAY_MS", "600001"),
        ("PURSER_SIM_TIMEOUTS_BEFORE_SUCCESS", "lots"),
    ] {
        let err = from(&[(name, value)]).unwrap_err();
        assert!(err.starts_with(name), "{err}");
    }
}

#[test]
fn stripe_needs_its_key_and_webhook_secret() {
    let Ok(GatewayConfig::Stripe(config)) = from(&STRIPE) else {
        panic!("stripe");
    };
    assert_eq!(config.api_key.expose(), "sk_test_51SecretValue");
    assert_eq!(config.webhook_secret.expose(), "whsec_SigningSecretValue");
    assert_eq!(config.base_url, StripeConfig::DEFAULT_BASE_URL);
    assert_eq!(
        config.request_timeout,
        StripeConfig::DEFAULT_REQUEST_TIMEOUT
    );

    let err = stripe_with(&[("STRIPE_API_KEY", "")]).unwrap_err();
    assert!(err.starts_with("STRIPE_API_KEY must be set"), "{err}");
    let err = stripe_with(&[("STRIPE_WEBHOOK_SECRET", "")]).unwrap_err();
    assert!(
        err.starts_with("STRIPE_WEBHOOK_SECRET must be set"),
        "{err}"
    );
    // A restricted key is fine.
    assert!(stripe_with(&[("STRIPE_API_KEY", "rk_test_restricted")]).is_ok());
}

#[test]
fn errors_and_debug_output_never_show_a_secret() {
    let err = stripe_with(&[("STRIPE_API_KEY", "pk_test_PublishableOops")]).unwrap_err();
    assert!(err.starts_with("STRIPE_API_KEY"), "{err}");
    assert!(!err.contains("PublishableOops"), "{err}");
    let err = stripe_with(&[("STRIPE_WEBHOOK_SECRET", "notwhsec_Leaky")]).unwrap_err();
    assert!(err.starts_with("STRIPE_WEBHOOK_SECRET"), "{err}");
    assert!(!err.contains("Leaky"), "{err}");
    let err = stripe_with(&[("STRIPE_API_BASE", "https://user:hunter2@example.com")]).unwrap_err();
    assert!(err.starts_with("STRIPE_API_BASE"), "{err}");
    assert!(!err.contains("hunter2"), "{err}");

    let config = from(&STRIPE).unwrap();
    let debug = format!("{config:?}");
    assert!(!debug.contains("SecretValue"), "{debug}");
    assert!(!debug.contains("SigningSecretValue"), "{debug}");
    assert!(debug.contains("[redacted]"), "{debug}");
}

#[test]
fn the_stripe_base_url_and_timeout_can_be_overridden() {
    let Ok(GatewayConfig::Stripe(config)) = stripe_with(&[
        ("STRIPE_API_BASE", "http://127.0.0.1:12111/"),
        ("STRIPE_REQUEST_TIMEOUT_MS", "1500"),
    ]) else {
        panic!("stripe");
    };
    assert_eq!(config.base_url, "http://127.0.0.1:12111");
    assert_eq!(config.request_timeout, Duration::from_millis(1_500));
    for base in ["ftp://example.com", "not a url", "https://example.com/?x=1"] {
        let err = stripe_with(&[("STRIPE_API_BASE", base)]).unwrap_err();
        assert!(err.starts_with("STRIPE_API_BASE"), "{err}");
    }
    let err = stripe_with(&[("STRIPE_REQUEST_TIMEOUT_MS", "0")]).unwrap_err();
    assert!(err.starts_with("STRIPE_REQUEST_TIMEOUT_MS"), "{err}");
}

#[test]
fn an_unknown_gateway_is_named_in_the_error() {
    let err = from(&[("PURSER_PAYMENT_GATEWAY", "paypal")]).unwrap_err();
    assert_eq!(
        err,
        "PURSER_PAYMENT_GATEWAY must be `simulated` or `stripe`, not \"paypal\"."
    );
}
