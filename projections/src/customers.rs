//! The customer read model: `sales.customers`, `sales.customer_orders` and
//! `sales.customer_licenses`.
//!
//! A customer row appears with the first event that mentions the customer: registering,
//! being provisioned for an order, or placing one (a guest checkout of physical goods places
//! an order and nothing else). The password hash in `CustomerRegistered` is never written
//! anywhere: read models are widely readable, hashes are not for them.
//!
//! Payment and refund events of an order carry only the order id, so this projection keeps
//! its own index of orders (`sales.customer_orders`) to attribute them; it never reads another
//! projection's tables, which may be at a different position in the log.

use async_trait::async_trait;
use purser_domain::customer::{CustomerEvent, Role};
use purser_domain::events::AnyEvent;
use purser_domain::license::LicenseEvent;
use purser_domain::order::OrderEvent;
use purser_event_store::{EventFilter, RecordedEvent};
use sqlx::PgConnection;

use crate::{Projection, ProjectionError, decode};

pub struct CustomersProjection;

impl CustomersProjection {
    pub const NAME: &'static str = "customers";
}

pub(crate) fn role_name(r: Role) -> &'static str {
    match r {
        Role::Customer => "customer",
        Role::Admin => "admin",
        Role::Analyst => "analyst",
        Role::Auditor => "auditor",
    }
}

#[async_trait]
impl Projection for CustomersProjection {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn filter(&self) -> EventFilter {
        EventFilter::categories(["customer", "license", "order"])
    }

    fn tables(&self) -> &'static [&'static str] {
        &[
            "sales.customers",
            "sales.customer_orders",
            "sales.customer_licenses",
        ]
    }

    async fn apply(
        &self,
        tx: &mut PgConnection,
        event: &RecordedEvent,
    ) -> Result<(), ProjectionError> {
        match decode(event)? {
            AnyEvent::Customer(e) => apply_customer(tx, e).await,
            AnyEvent::License(e) => apply_license(tx, e).await,
            AnyEvent::Order(e) => apply_order(tx, e).await,
            _ => Ok(()),
        }
    }
}

/// Roles are kept sorted and unique, so the same grants in the same order always give the
/// same array.
const ADD_ROLE: &str = "array(select distinct r from unnest(roles || $2::text) r order by r)";

async fn apply_customer(tx: &mut PgConnection, e: CustomerEvent) -> Result<(), ProjectionError> {
    match e {
        CustomerEvent::CustomerRegistered {
            customer_id,
            email,
            name,
            at,
            // The hash stays in the event log; see the module documentation.
            password_hash: _,
        } => {
            sqlx::query(
                "insert into sales.customers
                    (customer_id, email, name, registered, guest, created_at, registered_at,
                     updated_at)
                 values ($1, $2, $3, true, false, $4, $4, $4)
                 on conflict (customer_id) do update
                 set email = excluded.email, name = excluded.name, registered = true,
                     guest = false, registered_at = excluded.registered_at,
                     updated_at = excluded.updated_at",
            )
            .bind(customer_id.as_uuid())
            .bind(email.as_str())
            .bind(name)
            .bind(at)
            .execute(&mut *tx)
            .await?;
        }
        CustomerEvent::AccountProvisioned {
            customer_id,
            email,
            at,
            ..
        } => {
            // As in the aggregate, the first email known stays.
            sqlx::query(
                "insert into sales.customers
                    (customer_id, email, registered, guest, provisioned, created_at, updated_at)
                 values ($1, $2, false, true, true, $3, $3)
                 on conflict (customer_id) do update
                 set provisioned = true, updated_at = excluded.updated_at",
            )
            .bind(customer_id.as_uuid())
            .bind(email.as_str())
            .bind(at)
            .execute(&mut *tx)
            .await?;
        }
        CustomerEvent::RoleGranted {
            customer_id,
            role,
            at,
        } => {
            sqlx::query(&format!(
                "update sales.customers set roles = {ADD_ROLE}, updated_at = $3
                 where customer_id = $1"
            ))
            .bind(customer_id.as_uuid())
            .bind(role_name(role))
            .bind(at)
            .execute(&mut *tx)
            .await?;
        }
        CustomerEvent::RoleRevoked {
            customer_id,
            role,
            at,
        } => {
            sqlx::query(
                "update sales.customers set roles = array_remove(roles, $2), updated_at = $3
                 where customer_id = $1",
            )
            .bind(customer_id.as_uuid())
            .bind(role_name(role))
            .bind(at)
            .execute(&mut *tx)
            .await?;
        }
        CustomerEvent::EmailVerified {
            customer_id, at, ..
        } => {
            sqlx::query(
                "update sales.customers set verified = true, updated_at = $2
                 where customer_id = $1",
            )
            .bind(customer_id.as_uuid())
            .bind(at)
            .execute(&mut *tx)
            .await?;
        }
        CustomerEvent::AccountDisabled {
            customer_id, at, ..
        } => {
            sqlx::query(
                "update sales.customers set disabled_at = $2, updated_at = $2
                 where customer_id = $1",
            )
            .bind(customer_id.as_uuid())
            .bind(at)
            .execute(&mut *tx)
            .await?;
        }
        CustomerEvent::AccountEnabled { customer_id, at } => {
            sqlx::query(
                "update sales.customers set disabled_at = null, updated_at = $2
                 where customer_id = $1",
            )
            .bind(customer_id.as_uuid())
            .bind(at)
            .execute(&mut *tx)
            .await?;
        }
        // Tokens, links and passwords change nothing a read model shows.
        CustomerEvent::SignInTokenRedeemed { .. }
        | CustomerEvent::EmailVerificationRequested { .. }
        | CustomerEvent::PasswordResetRequested { .. }
        | CustomerEvent::PasswordChanged { .. } => {}
    }
    Ok(())
}

/// A verified account took over a guest's order: the order, its licenses and both customers'
/// counts move with it.
async fn claim_order(
    tx: &mut PgConnection,
    order_id: uuid::Uuid,
    to: uuid::Uuid,
    from: uuid::Uuid,
    at: chrono::DateTime<chrono::Utc>,
) -> Result<(), ProjectionError> {
    for table in ["sales.customer_orders", "sales.customer_licenses"] {
        sqlx::query(&format!(
            "update {table} set customer_id = $2 where order_id = $1"
        ))
        .bind(order_id)
        .bind(to)
        .execute(&mut *tx)
        .await?;
    }
    sqlx::query(
        "update sales.customers c
         set orders_count = (select count(*) from sales.customer_orders o
                             where o.customer_id = c.customer_id),
             first_order_at = (select min(placed_at) from sales.customer_orders o
                               where o.customer_id = c.customer_id),
             last_order_at = (select max(placed_at) from sales.customer_orders o
                              where o.customer_id = c.customer_id),
             updated_at = $2
         where c.customer_id = any($1)",
    )
    .bind(vec![to, from])
    .bind(at)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

async fn apply_order(tx: &mut PgConnection, e: OrderEvent) -> Result<(), ProjectionError> {
    match e {
        OrderEvent::OrderPlaced {
            order_id,
            customer_id,
            email,
            total,
            at,
            ..
        } => {
            sqlx::query(
                "insert into sales.customers
                    (customer_id, email, registered, guest, created_at, updated_at,
                     orders_count, first_order_at, last_order_at)
                 values ($1, $2, false, true, $3, $3, 1, $3, $3)
                 on conflict (customer_id) do update
                 set orders_count = sales.customers.orders_count + 1,
                     first_order_at = coalesce(sales.customers.first_order_at, excluded.first_order_at),
                     last_order_at = excluded.last_order_at,
                     updated_at = excluded.updated_at",
            )
            .bind(customer_id.as_uuid())
            .bind(email.as_str())
            .bind(at)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "insert into sales.customer_orders
                    (order_id, customer_id, currency, total_minor, placed_at)
                 values ($1, $2, $3, $4, $5)",
            )
            .bind(order_id.as_uuid())
            .bind(customer_id.as_uuid())
            .bind(total.currency.code())
            .bind(total.minor)
            .bind(at)
            .execute(&mut *tx)
            .await?;
        }
        OrderEvent::OrderPaid {
            order_id, amount, ..
        } => {
            sqlx::query(
                "update sales.customer_orders set paid_minor = paid_minor + $2 where order_id = $1",
            )
            .bind(order_id.as_uuid())
            .bind(amount.minor)
            .execute(&mut *tx)
            .await?;
        }
        OrderEvent::OrderRefunded {
            order_id, amount, ..
        } => {
            sqlx::query(
                "update sales.customer_orders set refunded_minor = refunded_minor + $2
                 where order_id = $1",
            )
            .bind(order_id.as_uuid())
            .bind(amount.minor)
            .execute(&mut *tx)
            .await?;
        }
        OrderEvent::OrderClaimed {
            order_id,
            customer_id,
            guest_customer_id,
            at,
        } => {
            let (order, to, from) = (
                order_id.as_uuid(),
                customer_id.as_uuid(),
                guest_customer_id.as_uuid(),
            );
            claim_order(tx, order, to, from, at).await?;
        }
        _ => {}
    }
    Ok(())
}

async fn apply_license(tx: &mut PgConnection, e: LicenseEvent) -> Result<(), ProjectionError> {
    match e {
        LicenseEvent::LicenseIssued {
            license_id,
            sku,
            order_id,
            customer_id,
            seats,
            key,
            expires_at,
            at,
        } => {
            sqlx::query(
                "insert into sales.customer_licenses
                    (license_id, customer_id, sku, order_id, seats, license_key, expires_at,
                     status, issued_at)
                 values ($1, $2, $3, $4, $5, $6, $7, 'issued', $8)",
            )
            .bind(license_id.as_uuid())
            .bind(customer_id.as_uuid())
            .bind(sku.as_str())
            .bind(order_id.as_uuid())
            .bind(i32::try_from(seats).unwrap_or(i32::MAX))
            .bind(key)
            .bind(expires_at)
            .bind(at)
            .execute(&mut *tx)
            .await?;
        }
        LicenseEvent::LicenseAttached {
            license_id,
            customer_id,
            at,
            ..
        } => {
            sqlx::query(
                "update sales.customer_licenses
                 set customer_id = $2, attached_at = $3,
                     status = case when status = 'revoked' then status else 'attached' end
                 where license_id = $1",
            )
            .bind(license_id.as_uuid())
            .bind(customer_id.as_uuid())
            .bind(at)
            .execute(&mut *tx)
            .await?;
        }
        LicenseEvent::LicenseRevoked {
            license_id,
            reason,
            at,
            ..
        } => {
            sqlx::query(
                "update sales.customer_licenses
                 set status = 'revoked', revoked_at = $2, revoke_reason = $3
                 where license_id = $1",
            )
            .bind(license_id.as_uuid())
            .bind(at)
            .bind(reason)
            .execute(&mut *tx)
            .await?;
        }
        // A license that could not be issued never reaches a customer.
        LicenseEvent::LicenseIssueFailed { .. } => {}
    }
    Ok(())
}
