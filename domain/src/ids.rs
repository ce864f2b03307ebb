//! Typed identifiers. Each wraps a UUID so an order id can never be passed where a cart id is
//! expected, and each knows the stream it names.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The namespace for name-based (v5) ids Purser derives deterministically.
pub const PURSER_NAMESPACE: Uuid = Uuid::from_u128(0x6a1f_3c5e_94d2_4b7a_8e21_0c5d_9f3b_7a10);

/// Derives a stable id from its parts. Process managers use it so that a command sent again
/// after a crash carries the same ids as the first time, and so appends nothing new.
pub fn derive_id(parts: &[&str]) -> Uuid {
    let joined = parts.join("\u{1f}");
    Uuid::new_v5(&PURSER_NAMESPACE, joined.as_bytes())
}

/// A string that failed to parse as an id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} must be a UUID, got {value:?}")]
pub struct IdParseError {
    pub kind: &'static str,
    pub value: String,
}

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident, $category:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            /// The stream category this id names.
            pub const CATEGORY: &'static str = $category;

            /// A fresh, time-ordered (v7) id.
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }

            /// A deterministic id derived from `parts` (see [`derive_id`]).
            pub fn derived(parts: &[&str]) -> Self {
                Self(derive_id(parts))
            }

            pub fn as_uuid(&self) -> Uuid {
                self.0
            }

            /// The name of this id's event stream, `<category>-<uuid>`.
            pub fn stream(&self) -> String {
                format!("{}-{}", $category, self.0)
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self(Uuid::nil())
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = IdParseError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s.trim()).map(Self).map_err(|_| IdParseError {
                    kind: stringify!($name),
                    value: s.chars().take(64).collect(),
                })
            }
        }

        impl From<Uuid> for $name {
            fn from(u: Uuid) -> Self {
                Self(u)
            }
        }
    };
}

uuid_id!(
    /// An order; stream `order-<id>`.
    OrderId, "order"
);
uuid_id!(
    /// A shopping cart; stream `cart-<id>`.
    CartId, "cart"
);
uuid_id!(
    /// A payment; stream `payment-<id>`.
    PaymentId, "payment"
);
uuid_id!(
    /// A customer account; stream `customer-<id>`.
    CustomerId, "customer"
);
uuid_id!(
    /// An issued license; stream `license-<id>`.
    LicenseId, "license"
);
uuid_id!(
    /// A notification (an email to send); stream `notification-<id>`.
    NotificationId, "notification"
);
uuid_id!(
    /// A stock reservation; it lives in its SKU's inventory stream.
    ReservationId, "reservation"
);

impl CustomerId {
    /// A registered account's id, derived from the normalised email address, so two
    /// registrations of one address collide on the stream's existence.
    pub fn for_email(email: &crate::Email) -> Self {
        Self::derived(&["customer", email.as_str()])
    }

    /// The guest identity of one checkout: derived from the order, never from the email the
    /// guest typed, so a guest checkout can never land on (or sign anyone into) an account.
    /// Each guest checkout has its own; a verified account claims them by proving the address.
    pub fn guest_of(order_id: crate::OrderId) -> Self {
        Self::derived(&["guest", &order_id.to_string()])
    }
}
