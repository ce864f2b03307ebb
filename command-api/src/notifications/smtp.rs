//! Sending one email over SMTP with `lettre` (tokio, rustls with the ring provider).
//!
//! Every message carries `Message-ID: <notification-id@purser>`. Delivery is at-least-once:
//! the worker records `NotificationSent` only after the server has accepted the message, so a
//! crash in between sends the same email again on restart. Because the Message-ID is derived
//! from the notification id, that second copy is recognisably the same message and receivers
//! (and mail stores) that de-duplicate by Message-ID show it once.

use std::time::Duration;

use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use purser_domain::{Email, NotificationId};

use super::ConfigError;
use super::templates::RenderedEmail;
use purser_api_core::config::Secret;

/// How the connection to the SMTP server is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpTls {
    /// Plain text (a local relay or a test server).
    None,
    /// Connect in plain text, then require `STARTTLS` (usually port 587).
    StartTls,
    /// TLS from the first byte (usually port 465).
    Tls,
}

/// Where and how to send email.
#[derive(Debug, Clone)]
pub struct SmtpConfig {
    pub host: String,
    pub port: u16,
    pub username: Option<String>,
    /// Redacted in `Debug`; never echoed in an error.
    pub password: Option<Secret>,
    /// The `From` mailbox, e.g. `Purser <shop@purser.local>`.
    pub from: Mailbox,
    pub tls: SmtpTls,
    /// How long one SMTP conversation may take (connect, each command, the data).
    pub timeout: Duration,
}

pub const DEFAULT_SMTP_HOST: &str = "127.0.0.1";
pub const DEFAULT_SMTP_PORT: u16 = 1025;
pub const DEFAULT_SMTP_FROM: &str = "Purser <shop@purser.local>";

impl Default for SmtpConfig {
    fn default() -> Self {
        SmtpConfig {
            host: DEFAULT_SMTP_HOST.into(),
            port: DEFAULT_SMTP_PORT,
            username: None,
            password: None,
            from: DEFAULT_SMTP_FROM
                .parse()
                .expect("the default sender parses"),
            tls: SmtpTls::None,
            timeout: Duration::from_secs(10),
        }
    }
}

impl SmtpConfig {
    /// Reads the `PURSER_SMTP_*` variables through `get` (empty values count as unset).
    pub fn from_lookup(get: &dyn Fn(&str) -> Option<String>) -> Result<SmtpConfig, ConfigError> {
        let mut config = SmtpConfig::default();
        if let Some(host) = get("PURSER_SMTP_HOST") {
            if host.chars().any(|c| c.is_whitespace() || c.is_control()) || host.len() > 253 {
                return Err(ConfigError(format!(
                    "PURSER_SMTP_HOST must be a host name or IP address, not {:?}",
                    super::shorten(&host)
                )));
            }
            config.host = host;
        }
        if let Some(raw) = get("PURSER_SMTP_PORT") {
            config.port = raw.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| {
                ConfigError(format!(
                    "PURSER_SMTP_PORT must be a port number from 1 to 65535, not {:?}",
                    super::shorten(&raw)
                ))
            })?;
        }
        config.username = get("PURSER_SMTP_USERNAME");
        config.password = get("PURSER_SMTP_PASSWORD").map(Secret::new);
        match (&config.username, &config.password) {
            (Some(_), None) => {
                return Err(ConfigError(
                    "PURSER_SMTP_PASSWORD must be set when PURSER_SMTP_USERNAME is".into(),
                ));
            }
            (None, Some(_)) => {
                // The password is not repeated: it is a secret.
                return Err(ConfigError(
                    "PURSER_SMTP_USERNAME must be set when PURSER_SMTP_PASSWORD is".into(),
                ));
            }
            _ => {}
        }
        if let Some(raw) = get("PURSER_SMTP_FROM") {
            config.from = raw.parse().map_err(|_| {
                ConfigError(format!(
                    "PURSER_SMTP_FROM must be an address like `{DEFAULT_SMTP_FROM}`, not {:?}",
                    super::shorten(&raw)
                ))
            })?;
        }
        if let Some(raw) = get("PURSER_SMTP_TLS") {
            config.tls = match raw.to_ascii_lowercase().as_str() {
                "none" => SmtpTls::None,
                "starttls" => SmtpTls::StartTls,
                "tls" => SmtpTls::Tls,
                _ => {
                    return Err(ConfigError(format!(
                        "PURSER_SMTP_TLS must be `none`, `starttls` or `tls`, not {:?}",
                        super::shorten(&raw)
                    )));
                }
            };
        }
        if let Some(raw) = get("PURSER_SMTP_TIMEOUT_MS") {
            config.timeout = super::millis("PURSER_SMTP_TIMEOUT_MS", &raw, 100, 600_000)?;
        }
        if config.password.is_some() && config.tls == SmtpTls::None {
            tracing::warn!(
                "PURSER_SMTP_PASSWORD is set but PURSER_SMTP_TLS is `none`: the SMTP password \
                 would cross the network in clear text"
            );
        }
        Ok(config)
    }
}

/// Why an email was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SendError {
    pub message: String,
    /// The server refused for good (a 5xx reply, a malformed recipient): trying again later
    /// would get the same answer.
    pub permanent: bool,
}

/// Sends rendered emails. Opens one connection per email: notifications are few, and a fresh
/// connection means an SMTP server that restarted is simply reached again, with no stale pooled
/// connection to fail on first.
#[derive(Clone)]
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailer")
            .field("from", &self.from.to_string())
            .finish_non_exhaustive()
    }
}

impl Mailer {
    pub fn new(config: &SmtpConfig) -> Result<Mailer, ConfigError> {
        // Servers expect a domain in EHLO; the sender's own domain is the most truthful one this
        // process has (the `hostname` feature, which would read the machine's name, is off).
        let hello = ClientId::Domain(config.from.email.domain().to_owned());
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&config.host)
            .port(config.port)
            .timeout(Some(config.timeout))
            .hello_name(hello);
        let tls_params = || {
            TlsParameters::new(config.host.clone()).map_err(|e| {
                ConfigError(format!(
                    "PURSER_SMTP_TLS cannot be used with PURSER_SMTP_HOST {:?}: {e}",
                    super::shorten(&config.host)
                ))
            })
        };
        builder = match config.tls {
            SmtpTls::None => builder.tls(Tls::None),
            SmtpTls::StartTls => builder.tls(Tls::Required(tls_params()?)),
            SmtpTls::Tls => builder.tls(Tls::Wrapper(tls_params()?)),
        };
        if let (Some(user), Some(password)) = (&config.username, &config.password) {
            builder =
                builder.credentials(Credentials::new(user.clone(), password.expose().to_owned()));
        }
        Ok(Mailer {
            transport: builder.build(),
            from: config.from.clone(),
        })
    }

    /// The message as it goes on the wire: plain text and HTML alternatives, and the
    /// notification's deterministic Message-ID.
    pub fn message(
        &self,
        id: NotificationId,
        to: &Email,
        email: &RenderedEmail,
    ) -> Result<Message, SendError> {
        let permanent = |message: String| SendError {
            message,
            permanent: true,
        };
        let to: Mailbox = to
            .as_str()
            .parse()
            .map_err(|e| permanent(format!("the recipient address is not usable: {e}")))?;
        Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(email.subject.clone())
            .message_id(Some(message_id(id)))
            .multipart(MultiPart::alternative_plain_html(
                email.text.clone(),
                email.html.clone(),
            ))
            .map_err(|e| permanent(format!("cannot build the message: {e}")))
    }

    /// Hands the email to the SMTP server. `Ok` means the server accepted responsibility for it.
    pub async fn send(
        &self,
        id: NotificationId,
        to: &Email,
        email: &RenderedEmail,
    ) -> Result<(), SendError> {
        let message = self.message(id, to, email)?;
        self.transport
            .send(message)
            .await
            .map(|_| ())
            .map_err(|e| SendError {
                permanent: e.is_permanent(),
                message: format!("SMTP: {e}"),
            })
    }
}

/// `<notification-id@purser>`: the same for every attempt at one notification.
pub fn message_id(id: NotificationId) -> String {
    format!("<{id}@purser>")
}
