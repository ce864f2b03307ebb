//! Cart: a shopper's basket, stream `cart-<uuid>`.
//!
//! Availability is looked up by the caller and passed in (`available`, `None` meaning unlimited,
//! as for digital products), so the check is as fresh as the caller's read model. The binding
//! check happens later, when checkout reserves stock in the inventory stream.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::{
    Aggregate, CartId, Currency, CustomerId, DomainError, Event, Money, OrderId, Quantity, Sku,
    ValueError, bounded_text,
};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CartLine {
    pub sku: Sku,
    pub name: String,
    pub digital: bool,
    pub qty: Quantity,
    /// The price when the line was first added; raising the quantity keeps it.
    pub unit_price: Money,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CartStatus {
    #[default]
    Open,
    CheckedOut {
        order_id: OrderId,
    },
    Abandoned,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CartState {
    pub exists: bool,
    pub cart_id: CartId,
    pub customer_id: Option<CustomerId>,
    pub currency: Option<Currency>,
    /// In insertion order.
    pub lines: Vec<CartLine>,
    pub status: CartStatus,
    pub created_at: Option<DateTime<Utc>>,
    pub last_activity_at: Option<DateTime<Utc>>,
}

impl CartState {
    fn line(&self, sku: &Sku) -> Option<&CartLine> {
        self.lines.iter().find(|l| &l.sku == sku)
    }

    /// The sum of the lines, in the cart's currency.
    pub fn total(&self) -> Result<Money, CartError> {
        let currency = self.currency.unwrap_or(Currency::USD);
        self.lines.iter().try_fold(Money::zero(currency), |sum, l| {
            l.unit_price
                .checked_mul(l.qty.get())
                .and_then(|line| sum.checked_add(line))
                .map_err(|_| CartError::AmountTooLarge)
        })
    }

    /// The number of units in the cart (not the number of lines).
    pub fn item_count(&self) -> u32 {
        self.lines.iter().map(|l| l.qty.get()).sum()
    }
}

#[derive(Debug, Clone, PartialEq, strum::IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum CartCommand {
    Create {
        cart_id: CartId,
        customer_id: Option<CustomerId>,
        currency: Currency,
        now: DateTime<Utc>,
    },
    /// Adds a line, or raises the quantity of the line with this SKU.
    AddItem {
        sku: Sku,
        name: String,
        digital: bool,
        qty: Quantity,
        unit_price: Money,
        available: Option<u64>,
        now: DateTime<Utc>,
    },
    ChangeQuantity {
        sku: Sku,
        qty: Quantity,
        available: Option<u64>,
        now: DateTime<Utc>,
    },
    RemoveItem {
        sku: Sku,
        now: DateTime<Utc>,
    },
    CheckOut {
        order_id: OrderId,
        now: DateTime<Utc>,
    },
    /// Sent by the idle-cart deadline; only abandons a cart that really has been idle.
    Abandon {
        now: DateTime<Utc>,
        idle_after: Duration,
    },
    AssignCustomer {
        customer_id: CustomerId,
        now: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum CartEvent {
    CartCreated {
        cart_id: CartId,
        customer_id: Option<CustomerId>,
        currency: Currency,
        at: DateTime<Utc>,
    },
    CartItemAdded {
        cart_id: CartId,
        sku: Sku,
        name: String,
        digital: bool,
        qty: Quantity,
        unit_price: Money,
        at: DateTime<Utc>,
    },
    CartItemQuantityChanged {
        cart_id: CartId,
        sku: Sku,
        old_qty: Quantity,
        new_qty: Quantity,
        at: DateTime<Utc>,
    },
    CartItemRemoved {
        cart_id: CartId,
        sku: Sku,
        at: DateTime<Utc>,
    },
    CartCustomerAssigned {
        cart_id: CartId,
        customer_id: CustomerId,
        at: DateTime<Utc>,
    },
    /// `item_count` counts units, not lines.
    CartCheckedOut {
        cart_id: CartId,
        order_id: OrderId,
        total: Money,
        item_count: u32,
        at: DateTime<Utc>,
    },
    CartAbandoned {
        cart_id: CartId,
        last_activity_at: DateTime<Utc>,
        at: DateTime<Utc>,
    },
}

impl Event for CartEvent {
    event_names!(
        CartCreated,
        CartItemAdded,
        CartItemQuantityChanged,
        CartItemRemoved,
        CartCustomerAssigned,
        CartCheckedOut,
        CartAbandoned,
    );
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CartError {
    #[error("no such cart")]
    NotFound,
    #[error("the cart already exists")]
    AlreadyExists,
    #[error("the cart is in {cart}, the price in {price}")]
    CurrencyMismatch { cart: Currency, price: Currency },
    #[error("only {available} available, {requested} requested")]
    InsufficientStock { requested: u64, available: u64 },
    #[error("this item is not in the cart")]
    ItemNotInCart,
    #[error("the cart is empty")]
    Empty,
    #[error("the cart is checked out or abandoned")]
    Closed,
    #[error("a cart holds at most {} lines", Cart::MAX_LINES)]
    TooManyLines,
    #[error("a line holds at most {} units", Cart::MAX_LINE_QTY)]
    QuantityTooLarge,
    #[error("the cart belongs to another customer")]
    OwnedByAnotherCustomer,
    #[error("the cart's total would exceed {} minor units", Money::MAX_MINOR)]
    AmountTooLarge,
    #[error(transparent)]
    Invalid(#[from] ValueError),
}

impl DomainError for CartError {
    fn code(&self) -> &'static str {
        match self {
            Self::NotFound => "CART_NOT_FOUND",
            Self::AlreadyExists => "CART_ALREADY_EXISTS",
            Self::CurrencyMismatch { .. } => "CURRENCY_MISMATCH",
            Self::InsufficientStock { .. } => "INSUFFICIENT_STOCK",
            Self::ItemNotInCart => "ITEM_NOT_IN_CART",
            Self::Empty => "CART_EMPTY",
            Self::Closed => "CART_CLOSED",
            Self::TooManyLines => "TOO_MANY_LINES",
            Self::QuantityTooLarge => "QUANTITY_TOO_LARGE",
            Self::OwnedByAnotherCustomer => "CART_OWNED_BY_ANOTHER_CUSTOMER",
            Self::AmountTooLarge => "AMOUNT_TOO_LARGE",
            Self::Invalid(_) => "INVALID_INPUT",
        }
    }

    fn field(&self) -> Option<&'static str> {
        match self {
            Self::CurrencyMismatch { .. } => Some("price"),
            Self::InsufficientStock { .. } | Self::QuantityTooLarge => Some("quantity"),
            Self::ItemNotInCart => Some("sku"),
            Self::OwnedByAnotherCustomer => Some("customer_id"),
            Self::Invalid(e) => Some(e.field),
            _ => None,
        }
    }
}

pub struct Cart;

impl Cart {
    pub const MAX_LINES: usize = 100;
    pub const MAX_LINE_QTY: u32 = 1000;

    /// The events, if the cart they leave behind still has a total within the money bound
    /// (every line and every sum is checked, so no read model ever adds up past it).
    fn within_bounds(
        state: &CartState,
        events: Vec<CartEvent>,
    ) -> Result<Vec<CartEvent>, CartError> {
        let after = events.iter().fold(state.clone(), Self::evolve);
        after.total()?;
        Ok(events)
    }

    /// Checks a line's new total quantity against the per-line limit and the stock on offer.
    fn check_qty(new_qty: u32, available: Option<u64>) -> Result<(), CartError> {
        if new_qty > Self::MAX_LINE_QTY {
            return Err(CartError::QuantityTooLarge);
        }
        match available {
            Some(available) if u64::from(new_qty) > available => {
                Err(CartError::InsufficientStock { requested: new_qty.into(), available })
            }
            _ => Ok(()),
        }
    }
}

impl Aggregate for Cart {
    const CATEGORY: &'static str = "cart";
    type Id = CartId;
    type State = CartState;
    type Command = CartCommand;
    type Event = CartEvent;
    type Error = CartError;

    fn decide(state: &CartState, command: CartCommand) -> Result<Vec<CartEvent>, CartError> {
        use CartEvent::*;
        // Every command but Create needs an existing cart; contents change only while it is
        // open, and the idempotent commands look at the status themselves.
        let existing = || {
            if state.exists { Ok(state.cart_id) } else { Err(CartError::NotFound) }
        };
        let open = || {
            let cart_id = existing()?;
            match state.status {
                CartStatus::Open => Ok(cart_id),
                _ => Err(CartError::Closed),
            }
        };
        match command {
            CartCommand::Create { cart_id, customer_id, currency, now } => {
                if state.exists {
                    return Err(CartError::AlreadyExists);
                }
                Ok(vec![CartCreated { cart_id, customer_id, currency, at: now }])
            }
            CartCommand::AddItem { sku, name, digital, qty, unit_price, available, now } => {
                let cart_id = open()?;
                let currency = state.currency.unwrap_or(unit_price.currency);
                if unit_price.currency != currency {
                    return Err(CartError::CurrencyMismatch {
                        cart: currency,
                        price: unit_price.currency,
                    });
                }
                if unit_price.minor < 0 {
                    return Err(ValueError::new("price", "must not be negative").into());
                }
                if !unit_price.is_bounded() {
                    return Err(CartError::AmountTooLarge);
                }
                if let Some(line) = state.line(&sku) {
                    let new_qty = line.qty.get() + qty.get();
                    Self::check_qty(new_qty, available)?;
                    return Self::within_bounds(
                        state,
                        vec![CartItemQuantityChanged {
                            cart_id,
                            sku,
                            old_qty: line.qty,
                            new_qty: Quantity::new(new_qty.into())?,
                            at: now,
                        }],
                    );
                }
                if state.lines.len() >= Self::MAX_LINES {
                    return Err(CartError::TooManyLines);
                }
                Self::check_qty(qty.get(), available)?;
                let name = bounded_text("name", &name, 200, true)?;
                Self::within_bounds(
                    state,
                    vec![CartItemAdded { cart_id, sku, name, digital, qty, unit_price, at: now }],
                )
            }
            CartCommand::ChangeQuantity { sku, qty, available, now } => {
                let cart_id = open()?;
                let line = state.line(&sku).ok_or(CartError::ItemNotInCart)?;
                if line.qty == qty {
                    return Ok(vec![]);
                }
                // Lowering a quantity is always allowed, even if stock has since run short.
                let available = if qty > line.qty { available } else { None };
                Self::check_qty(qty.get(), available)?;
                Self::within_bounds(
                    state,
                    vec![CartItemQuantityChanged {
                        cart_id,
                        sku,
                        old_qty: line.qty,
                        new_qty: qty,
                        at: now,
                    }],
                )
            }
            CartCommand::RemoveItem { sku, now } => {
                let cart_id = open()?;
                state.line(&sku).ok_or(CartError::ItemNotInCart)?;
                Ok(vec![CartItemRemoved { cart_id, sku, at: now }])
            }
            CartCommand::CheckOut { order_id, now } => match (existing()?, &state.status) {
                (_, CartStatus::CheckedOut { order_id: done }) if *done == order_id => Ok(vec![]),
                (_, CartStatus::CheckedOut { .. } | CartStatus::Abandoned) => {
                    Err(CartError::Closed)
                }
                (_, CartStatus::Open) if state.lines.is_empty() => Err(CartError::Empty),
                (cart_id, CartStatus::Open) => Ok(vec![CartCheckedOut {
                    cart_id,
                    order_id,
                    total: state.total()?,
                    item_count: state.item_count(),
                    at: now,
                }]),
            },
            CartCommand::Abandon { now, idle_after } => {
                let cart_id = existing()?;
                let last = state.last_activity_at.unwrap_or(now);
                if state.status != CartStatus::Open || now - last < idle_after {
                    return Ok(vec![]);
                }
                Ok(vec![CartAbandoned { cart_id, last_activity_at: last, at: now }])
            }
            CartCommand::AssignCustomer { customer_id, now } => {
                let cart_id = open()?;
                match state.customer_id {
                    Some(owner) if owner == customer_id => Ok(vec![]),
                    Some(_) => Err(CartError::OwnedByAnotherCustomer),
                    None => Ok(vec![CartCustomerAssigned { cart_id, customer_id, at: now }]),
                }
            }
        }
    }

    fn evolve(mut state: CartState, event: &CartEvent) -> CartState {
        use CartEvent::*;
        match event {
            CartCreated { cart_id, customer_id, currency, at } => {
                state = CartState {
                    exists: true,
                    cart_id: *cart_id,
                    customer_id: *customer_id,
                    currency: Some(*currency),
                    created_at: Some(*at),
                    ..CartState::default()
                };
            }
            CartItemAdded { sku, name, digital, qty, unit_price, .. } => {
                state.lines.push(CartLine {
                    sku: sku.clone(),
                    name: name.clone(),
                    digital: *digital,
                    qty: *qty,
                    unit_price: *unit_price,
                });
            }
            CartItemQuantityChanged { sku, new_qty, .. } => {
                if let Some(line) = state.lines.iter_mut().find(|l| &l.sku == sku) {
                    line.qty = *new_qty;
                }
            }
            CartItemRemoved { sku, .. } => state.lines.retain(|l| &l.sku != sku),
            CartCustomerAssigned { customer_id, .. } => state.customer_id = Some(*customer_id),
            CartCheckedOut { order_id, .. } => {
                state.status = CartStatus::CheckedOut { order_id: *order_id }
            }
            CartAbandoned { .. } => state.status = CartStatus::Abandoned,
        }
        // Every event is activity, which pushes the idle deadline back.
        let at = match event {
            CartCreated { at, .. }
            | CartItemAdded { at, .. }
            | CartItemQuantityChanged { at, .. }
            | CartItemRemoved { at, .. }
            | CartCustomerAssigned { at, .. }
            | CartCheckedOut { at, .. }
            | CartAbandoned { at, .. } => *at,
        };
        state.last_activity_at = Some(at);
        state
    }
}

#[cfg(test)]
mod tests {
    use super::CartEvent::*;
    use super::*;
    use crate::aggregate::testing::given;
    use crate::test_support::{eur, qty, sku, t, usd};

    fn cid() -> CartId {
        CartId::derived(&["test-cart"])
    }

    fn created() -> CartEvent {
        CartCreated { cart_id: cid(), customer_id: None, currency: Currency::USD, at: t(0) }
    }

    fn added(s: &str, n: i64) -> CartEvent {
        CartItemAdded {
            cart_id: cid(),
            sku: sku(s),
            name: format!("Item {s}"),
            digital: false,
            qty: qty(n),
            unit_price: usd(1_000),
            at: t(1),
        }
    }

    fn add(s: &str, n: i64, available: Option<u64>) -> CartCommand {
        CartCommand::AddItem {
            sku: sku(s),
            name: format!("Item {s}"),
            digital: false,
            qty: qty(n),
            unit_price: usd(1_000),
            available,
            now: t(1),
        }
    }

    fn change(s: &str, n: i64, available: Option<u64>) -> CartCommand {
        CartCommand::ChangeQuantity { sku: sku(s), qty: qty(n), available, now: t(2) }
    }

    fn checked_out() -> CartEvent {
        CartCheckedOut {
            cart_id: cid(),
            order_id: OrderId::derived(&["o"]),
            total: usd(2_000),
            item_count: 2,
            at: t(3),
        }
    }

    #[test]
    fn create_once() {
        let create = || CartCommand::Create {
            cart_id: cid(),
            customer_id: None,
            currency: Currency::USD,
            now: t(0),
        };
        given::<Cart>([]).when(create()).then([created()]);
        given::<Cart>([created()]).when(create()).then_error("CART_ALREADY_EXISTS");
        given::<Cart>([]).when(add("A", 1, None)).then_error("CART_NOT_FOUND");
    }

    #[test]
    fn add_item_adds_or_raises_quantity() {
        given::<Cart>([created()]).when(add("A", 2, Some(5))).then([added("A", 2)]);
        given::<Cart>([created(), added("A", 2)]).when(add("A", 3, Some(5))).then([
            CartItemQuantityChanged {
                cart_id: cid(),
                sku: sku("A"),
                old_qty: qty(2),
                new_qty: qty(5),
                at: t(1),
            },
        ]);
        let err = given::<Cart>([created(), added("A", 2)])
            .when(add("A", 4, Some(5)))
            .result()
            .unwrap_err();
        assert_eq!((err.code(), err.field()), ("INSUFFICIENT_STOCK", Some("quantity")));
        given::<Cart>([created()]).when(add("A", 1001, None)).then_error("QUANTITY_TOO_LARGE");
        given::<Cart>([created(), added("A", 1000)])
            .when(add("A", 1, None))
            .then_error("QUANTITY_TOO_LARGE");
    }

    #[test]
    fn add_item_keeps_one_currency_and_bounded_lines() {
        let mut wrong_currency = add("A", 1, None);
        if let CartCommand::AddItem { unit_price, .. } = &mut wrong_currency {
            *unit_price = eur(1_000);
        }
        let err = given::<Cart>([created()]).when(wrong_currency).result().unwrap_err();
        assert_eq!((err.code(), err.field()), ("CURRENCY_MISMATCH", Some("price")));
        let full: Vec<CartEvent> = std::iter::once(created())
            .chain((0..100).map(|i| added(&format!("S{i}"), 1)))
            .collect();
        given::<Cart>(full).when(add("ONE-MORE", 1, None)).then_error("TOO_MANY_LINES");
    }

    #[test]
    fn no_line_or_total_can_pass_the_money_bound() {
        let priced = |n: i64, minor: i64| {
            let mut c = add("BIG", n, None);
            if let CartCommand::AddItem { unit_price, .. } = &mut c {
                *unit_price = usd(minor);
            }
            c
        };
        given::<Cart>([created()]).when(priced(1, i64::MAX)).then_error("AMOUNT_TOO_LARGE");
        // A bounded price whose line or cart total would pass the bound is refused at the
        // step that would pass it.
        let half = Money::MAX_MINOR / 2 + 1;
        given::<Cart>([created()]).when(priced(2, half)).then_error("AMOUNT_TOO_LARGE");
        let mut one = CartItemAdded {
            cart_id: cid(),
            sku: sku("BIG"),
            name: "Big".into(),
            digital: false,
            qty: qty(1),
            unit_price: usd(half),
            at: t(1),
        };
        given::<Cart>([created(), one.clone()])
            .when(change("BIG", 2, None))
            .then_error("AMOUNT_TOO_LARGE");
        if let CartItemAdded { sku: s, .. } = &mut one {
            *s = sku("OTHER");
        }
        given::<Cart>([created(), one]).when(priced(1, half)).then_error("AMOUNT_TOO_LARGE");
    }

    #[test]
    fn change_quantity_checks_stock_only_when_raising() {
        let history = [created(), added("A", 3)];
        given::<Cart>(history.clone()).when(change("A", 1, Some(0))).then([
            CartItemQuantityChanged {
                cart_id: cid(),
                sku: sku("A"),
                old_qty: qty(3),
                new_qty: qty(1),
                at: t(2),
            },
        ]);
        given::<Cart>(history.clone())
            .when(change("A", 4, Some(3)))
            .then_error("INSUFFICIENT_STOCK");
        given::<Cart>(history.clone()).when(change("A", 3, Some(0))).then([]);
        given::<Cart>(history.clone()).when(change("B", 1, None)).then_error("ITEM_NOT_IN_CART");
        given::<Cart>(history).when(change("A", 1001, None)).then_error("QUANTITY_TOO_LARGE");
    }

    #[test]
    fn remove_item() {
        let remove = |s| CartCommand::RemoveItem { sku: sku(s), now: t(2) };
        given::<Cart>([created(), added("A", 3)]).when(remove("A")).then([CartItemRemoved {
            cart_id: cid(),
            sku: sku("A"),
            at: t(2),
        }]);
        let err = given::<Cart>([created()]).when(remove("A")).result().unwrap_err();
        assert_eq!((err.code(), err.field()), ("ITEM_NOT_IN_CART", Some("sku")));
    }

    #[test]
    fn check_out_totals_the_cart_once() {
        let check_out = |o| CartCommand::CheckOut { order_id: OrderId::derived(&[o]), now: t(3) };
        let history = [created(), added("A", 1), added("B", 1)];
        given::<Cart>(history.clone()).when(check_out("o")).then([checked_out()]);
        let done = [created(), added("A", 1), added("B", 1), checked_out()];
        given::<Cart>(done.clone()).when(check_out("o")).then([]);
        given::<Cart>(done.clone()).when(check_out("other")).then_error("CART_CLOSED");
        given::<Cart>(done).when(add("C", 1, None)).then_error("CART_CLOSED");
        given::<Cart>([created()]).when(check_out("o")).then_error("CART_EMPTY");
    }

    #[test]
    fn abandon_only_idle_open_carts() {
        let abandon =
            |minutes| CartCommand::Abandon { now: t(minutes), idle_after: Duration::days(7) };
        let week = 7 * 24 * 60;
        given::<Cart>([created(), added("A", 1)]).when(abandon(1 + week)).then([CartAbandoned {
            cart_id: cid(),
            last_activity_at: t(1),
            at: t(1 + week),
        }]);
        given::<Cart>([created(), added("A", 1)]).when(abandon(week)).then([]);
        given::<Cart>([created(), added("A", 1), checked_out()]).when(abandon(2 * week)).then([]);
        let abandoned = CartAbandoned { cart_id: cid(), last_activity_at: t(0), at: t(week) };
        given::<Cart>([created(), abandoned]).when(add("A", 1, None)).then_error("CART_CLOSED");
    }

    #[test]
    fn assign_customer_claims_a_guest_cart_once() {
        let ann = CustomerId::derived(&["ann"]);
        let assign = |c| CartCommand::AssignCustomer { customer_id: c, now: t(4) };
        let assigned = CartCustomerAssigned { cart_id: cid(), customer_id: ann, at: t(4) };
        given::<Cart>([created()]).when(assign(ann)).then([assigned.clone()]);
        given::<Cart>([created(), assigned.clone()]).when(assign(ann)).then([]);
        given::<Cart>([created(), assigned])
            .when(assign(CustomerId::derived(&["bob"])))
            .then_error("CART_OWNED_BY_ANOTHER_CUSTOMER");
    }
}
