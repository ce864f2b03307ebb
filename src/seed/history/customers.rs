//! The demo customers: numbered addresses and names, and the accounts of those who signed up.

use std::collections::BTreeSet;

use anyhow::anyhow;
use chrono::{DateTime, Duration, Utc};
use purser_command_api::CommandBus;
use purser_command_api::accounts::{Accounts, Password, passwords};
use purser_domain::customer::{Customer, CustomerCommand};
use purser_domain::events::AnyEvent;
use purser_domain::{CustomerId, Email};

use super::{HistoryOptions, run};

pub(super) fn customer_email(i: usize) -> Email {
    Email::parse(&format!("customer{i:04}@example.com")).expect("valid demo email")
}

pub(super) fn customer_name(i: usize) -> String {
    const FIRST: &[&str] = &[
        "Ada", "Ben", "Chloe", "Dev", "Elif", "Femi", "Greta", "Hiro", "Ines", "Jon", "Kemal",
        "Lena",
    ];
    const LAST: &[&str] = &[
        "Okafor",
        "Lindqvist",
        "Moreau",
        "Tanaka",
        "Silva",
        "Novak",
        "Haddad",
        "Kowalski",
        "Byrne",
    ];
    format!(
        "{} {}",
        FIRST[i % FIRST.len()],
        LAST[(i / FIRST.len()) % LAST.len()]
    )
}

/// Signs up every seventh customer (all with one demo password, hashed once), at times spread
/// over the history; the rest appear as guests when they first buy software. Returns the
/// numbers of those who signed up.
pub(super) async fn register_customers(
    accounts: &Accounts,
    opts: HistoryOptions,
    start: DateTime<Utc>,
    sink: &mut Vec<AnyEvent>,
) -> anyhow::Result<BTreeSet<usize>> {
    let bus: &CommandBus = &accounts.bus;
    let password = Password::parse("demo-customer".into()).map_err(|e| anyhow!("{e}"))?;
    let hash = accounts
        .hasher
        .hash(password)
        .await
        .map_err(|e| anyhow!("{e}"))?;
    let mut registered = BTreeSet::new();
    for i in 0..opts.customers {
        if i % 7 == 0 {
            let email = customer_email(i);
            let at = start + Duration::minutes((i as i64 * 97) % (opts.days * 24 * 60).max(1));
            let id = CustomerId::for_email(&email);
            let verification_id = purser_domain::derive_id(&["seed-verification", email.as_str()]);
            let cmd = CustomerCommand::Register {
                email: email.clone(),
                name: customer_name(i),
                verification_id,
                now: at,
            };
            run::<Customer>(bus, &id, cmd, sink).await?;
            // Demo customers have proved their addresses (no verification emails go out).
            let verify = CustomerCommand::VerifyEmail {
                verification_id,
                now: at,
            };
            run::<Customer>(bus, &id, verify, sink).await?;
            passwords::store_hash(&accounts.pool, id, &hash)
                .await
                .map_err(|e| anyhow!("{e}"))?;
            registered.insert(i);
        }
    }
    Ok(registered)
}
