//! Customers and carts.

use purser_domain::CartId;
use purser_domain::Currency;
use purser_domain::cart::CartEvent;
use purser_domain::customer::{CustomerEvent, PasswordHash, Role};
use purser_domain::events::AnyEvent;
use purser_event_store::Position;

use super::{Line, Scenario, customer_of, email, qty, sku, t, usd};

impl Scenario {
    pub async fn register(&self, e: &str, name: &str, at: i64) -> Position {
        let id = customer_of(e);
        self.append(
            id.stream(),
            [CustomerEvent::CustomerRegistered {
                customer_id: id,
                email: email(e),
                name: name.into(),
                // As accounts registered before credentials left the log: read models must
                // never copy the hash.
                password_hash: Some(
                    PasswordHash::from_phc(
                        "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo",
                    )
                    .unwrap(),
                ),
                at: t(at),
            }
            .into()],
        )
        .await
    }

    pub async fn grant(&self, e: &str, role: Role, at: i64) -> Position {
        let id = customer_of(e);
        self.append(
            id.stream(),
            [CustomerEvent::RoleGranted {
                customer_id: id,
                role,
                at: t(at),
            }
            .into()],
        )
        .await
    }

    /// A cart with these items, created at `at` (one minute per item added after that).
    pub async fn cart(
        &self,
        cart_id: CartId,
        owner: Option<&str>,
        items: &[Line],
        at: i64,
    ) -> Position {
        let mut events: Vec<AnyEvent> = vec![
            CartEvent::CartCreated {
                cart_id,
                customer_id: owner.map(customer_of),
                currency: Currency::USD,
                at: t(at),
            }
            .into(),
        ];
        for (i, l) in items.iter().enumerate() {
            events.push(
                CartEvent::CartItemAdded {
                    cart_id,
                    sku: sku(l.sku),
                    name: l.name.into(),
                    digital: l.digital,
                    qty: qty(l.qty),
                    unit_price: usd(l.unit_minor),
                    at: t(at + 1 + i as i64),
                }
                .into(),
            );
        }
        self.append(cart_id.stream(), events).await
    }

    pub async fn cart_event(&self, e: CartEvent) -> Position {
        let cart_id = match &e {
            CartEvent::CartCreated { cart_id, .. }
            | CartEvent::CartItemAdded { cart_id, .. }
            | CartEvent::CartItemQuantityChanged { cart_id, .. }
            | CartEvent::CartItemRemoved { cart_id, .. }
            | CartEvent::CartCustomerAssigned { cart_id, .. }
            | CartEvent::CartCheckedOut { cart_id, .. }
            | CartEvent::CartAbandoned { cart_id, .. } => *cart_id,
        };
        self.append(cart_id.stream(), [e.into()]).await
    }
}
