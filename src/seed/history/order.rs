//! One seeded order's life, from the cart to its outcome, written step by step through the
//! same commands the checkout process manager and an admin would send.

use anyhow::anyhow;
use chrono::{DateTime, Duration, Utc};
use purser_command_api::licensing::LicenseSigner;
use purser_command_api::{CommandBus, Executed};
use purser_domain::cart::{Cart, CartCommand};
use purser_domain::checkout::CheckoutState;
use purser_domain::customer::{Customer, CustomerCommand};
use purser_domain::events::AnyEvent;
use purser_domain::inventory::{Inventory, InventoryCommand, InventoryEvent, ReleaseReason};
use purser_domain::order::{CancelledBy, Order, OrderCommand, OrderLine, ShippingAddress};
use purser_domain::payment::PaymentMethod;
use purser_domain::{
    Aggregate, CartId, Currency, CustomerId, Email, Money, OrderId, Quantity, ReservationId, Sku,
};

use super::customers::{customer_email, customer_name};
use super::plan::{After, PaymentPlan, Plan, PlannedLine, card};
use super::run;

/// Who buys: the customer's number, and whether they signed up before.
pub(super) struct Buyer {
    pub(super) number: usize,
    pub(super) registered: bool,
}

/// A physical line's stock, held for the order.
pub(super) struct Reserved {
    pub(super) sku: Sku,
    pub(super) reservation_id: ReservationId,
    pub(super) qty: Quantity,
}

/// One order being written: its ids, its time line and every event appended so far.
pub(super) struct OrderWriter<'a> {
    bus: &'a CommandBus,
    /// The order's number in the history; ids and details derive from it.
    pub(super) i: usize,
    /// When the order was placed; every step is timed from it.
    pub(super) t: DateTime<Utc>,
    pub(super) order_id: OrderId,
    pub(super) customer_id: CustomerId,
    events: Vec<AnyEvent>,
}

impl OrderWriter<'_> {
    /// `secs` seconds after the order was placed.
    pub(super) fn at(&self, secs: i64) -> DateTime<Utc> {
        self.t + Duration::seconds(secs)
    }

    pub(super) async fn run<A>(
        &mut self,
        id: &A::Id,
        cmd: A::Command,
    ) -> anyhow::Result<Executed<A>>
    where
        A: Aggregate,
        A::State: Send + Sync + 'static,
        A::Command: Clone,
        A::Event: Into<AnyEvent>,
    {
        run::<A>(self.bus, id, cmd, &mut self.events).await
    }

    pub(super) async fn order(&mut self, cmd: OrderCommand) -> anyhow::Result<()> {
        let id = self.order_id;
        self.run::<Order>(&id, cmd).await.map(drop)
    }
}

/// Writes one order's whole life. Returns its id, every event it appended, and whether an
/// abandoned cart came with it.
pub(super) async fn seed_order(
    bus: &CommandBus,
    signer: Option<&LicenseSigner>,
    i: usize,
    plan: Plan,
    buyer: Buyer,
    now: DateTime<Utc>,
) -> anyhow::Result<(OrderId, Vec<AnyEvent>, bool)> {
    let email = customer_email(buyer.number);
    let mut w = OrderWriter {
        bus,
        i,
        t: plan.at,
        order_id: OrderId::derived(&["seed-order", &i.to_string()]),
        customer_id: if buyer.registered {
            CustomerId::for_email(&email)
        } else {
            CustomerId::guest_of(OrderId::derived(&["seed-order", &i.to_string()]))
        },
        events: Vec::new(),
    };
    let cart_id = CartId::derived(&["seed-cart", &i.to_string()]);
    let owner = buyer.registered.then_some(w.customer_id);
    let currency = plan.lines[0].price.currency;
    w.cart(cart_id, owner, currency, &plan.lines).await?;
    let mut abandoned = false;
    if plan.abandoned_cart {
        abandoned = w.abandoned_cart(&plan.lines[0], currency, now).await?;
    }
    let total = w.place(&plan, cart_id, email, &buyer).await?;

    let physical: Vec<&PlannedLine> = plan.lines.iter().filter(|l| l.terms.is_none()).collect();
    let (reserved, rejected) = w.reserve(&physical).await?;
    if !rejected.is_empty() {
        w.out_of_stock(&reserved, rejected).await?;
        return Ok(w.finish(abandoned));
    }
    let payment_id = CheckoutState::payment_id(w.order_id);
    w.start_payment(payment_id, total, plan.payment).await?;
    if let PaymentPlan::Fails(reason) = plan.payment {
        w.payment_failed(payment_id, reason, &reserved).await?;
        return Ok(w.finish(abandoned));
    }
    let has_physical = !physical.is_empty();
    w.capture(payment_id, total, &reserved, has_physical)
        .await?;
    let licenses = w.deliver_licenses(signer, &plan.lines).await?;

    // An admin cancels some confirmed orders before they ship: stock goes back, money too.
    let age = now - w.t;
    if plan.after == After::AdminCancel && has_physical {
        w.admin_cancel(payment_id, total, &reserved, &licenses)
            .await?;
        return Ok(w.finish(abandoned));
    }
    // Ship what is physical, as far as the order's age allows.
    if has_physical && age > Duration::hours(6) {
        w.ship(age).await?;
    }
    // A few are refunded afterwards, in full or in part.
    if plan.after == After::Refund && age > Duration::days(2) {
        w.refund(payment_id, total, &licenses).await?;
    }
    Ok(w.finish(abandoned))
}

impl OrderWriter<'_> {
    fn finish(self, abandoned: bool) -> (OrderId, Vec<AnyEvent>, bool) {
        (self.order_id, self.events, abandoned)
    }

    /// The cart that became this order.
    async fn cart(
        &mut self,
        cart_id: CartId,
        owner: Option<CustomerId>,
        currency: Currency,
        lines: &[PlannedLine],
    ) -> anyhow::Result<()> {
        let create = CartCommand::Create {
            cart_id,
            customer_id: owner,
            currency,
            now: self.at(-600),
        };
        self.run::<Cart>(&cart_id, create).await?;
        for line in lines {
            let add = add_item(line, self.at(-540));
            self.run::<Cart>(&cart_id, add).await?;
        }
        let check_out = CartCommand::CheckOut {
            order_id: self.order_id,
            now: self.t,
        };
        self.run::<Cart>(&cart_id, check_out).await?;
        Ok(())
    }

    /// Another shopper's cart with the order's first line, left behind; abandoned once it has
    /// been idle long enough. Returns whether it was abandoned.
    async fn abandoned_cart(
        &mut self,
        line: &PlannedLine,
        currency: Currency,
        now: DateTime<Utc>,
    ) -> anyhow::Result<bool> {
        let other = CartId::derived(&["seed-abandoned-cart", &self.i.to_string()]);
        let create = CartCommand::Create {
            cart_id: other,
            customer_id: None,
            currency,
            now: self.at(-3000),
        };
        self.run::<Cart>(&other, create).await?;
        self.run::<Cart>(&other, add_item(line, self.at(-2900)))
            .await?;
        let idle = Duration::days(7);
        if self.at(-2900) + idle >= now {
            return Ok(false);
        }
        let abandon = CartCommand::Abandon {
            now: self.at(-2900) + idle + Duration::minutes(5),
            idle_after: idle,
        };
        self.run::<Cart>(&other, abandon).await?;
        Ok(true)
    }

    /// Places the order (and provisions the buyer's account when it has software). Returns
    /// the order's total.
    async fn place(
        &mut self,
        plan: &Plan,
        cart_id: CartId,
        email: Email,
        buyer: &Buyer,
    ) -> anyhow::Result<Money> {
        let lines: Vec<OrderLine> = plan
            .lines
            .iter()
            .map(|l| OrderLine::new(l.sku.clone(), &l.name, l.qty, l.price, l.terms))
            .collect::<Result<_, _>>()
            .map_err(|e| anyhow!("{e}"))?;
        let has_physical = plan.lines.iter().any(|l| l.terms.is_none());
        let shipping_address = has_physical.then(|| {
            ShippingAddress::parse(
                &customer_name(buyer.number),
                "1 Demo Street",
                None,
                "Springfield",
                "12345",
                "US",
            )
            .expect("valid")
        });
        let currency = plan.lines[0].price.currency;
        let total = lines
            .iter()
            .try_fold(Money::zero(currency), |acc, l| {
                acc.checked_add(l.line_total)
            })
            .map_err(|e| anyhow!("{e}"))?;
        let place = OrderCommand::Place {
            order_id: self.order_id,
            customer_id: self.customer_id,
            email: email.clone(),
            lines,
            cart_id: Some(cart_id),
            payment_method: PaymentMethod::parse(card(plan.payment)).expect("valid token"),
            shipping_address,
            now: self.t,
        };
        self.order(place).await?;
        if plan.lines.iter().any(|l| l.terms.is_some()) {
            let customer_id = self.customer_id;
            let provision = CustomerCommand::ProvisionAccount {
                customer_id,
                email,
                order_id: self.order_id,
                now: self.at(1),
            };
            self.run::<Customer>(&customer_id, provision).await?;
        }
        Ok(total)
    }

    /// Reserves every physical line. Returns the lines reserved and the SKUs refused.
    async fn reserve(
        &mut self,
        physical: &[&PlannedLine],
    ) -> anyhow::Result<(Vec<Reserved>, Vec<Sku>)> {
        let mut reserved = Vec::new();
        let mut rejected = Vec::new();
        for line in physical {
            let reservation_id = CheckoutState::reservation_id(self.order_id, &line.sku);
            let cmd = InventoryCommand::Reserve {
                sku: line.sku.clone(),
                reservation_id,
                order_id: self.order_id,
                qty: line.qty,
                expires_at: self.at(600),
                now: self.at(1),
            };
            let done = self.run::<Inventory>(&line.sku, cmd).await?;
            match done.events.first() {
                Some(InventoryEvent::StockReserved { .. }) => reserved.push(Reserved {
                    sku: line.sku.clone(),
                    reservation_id,
                    qty: line.qty,
                }),
                _ => rejected.push(line.sku.clone()),
            }
        }
        Ok((reserved, rejected))
    }

    pub(super) async fn release(
        &mut self,
        reserved: &[Reserved],
        reason: ReleaseReason,
    ) -> anyhow::Result<()> {
        for r in reserved {
            let cmd = InventoryCommand::Release {
                reservation_id: r.reservation_id,
                reason,
                now: self.at(3),
            };
            self.run::<Inventory>(&r.sku, cmd).await?;
        }
        Ok(())
    }

    /// A sold-out line aborts the order: the rest is released and the order cancelled.
    async fn out_of_stock(
        &mut self,
        reserved: &[Reserved],
        rejected: Vec<Sku>,
    ) -> anyhow::Result<()> {
        self.release(reserved, ReleaseReason::OrderUnfulfillable)
            .await?;
        let reason = format!(
            "inventory unavailable: {}",
            rejected
                .iter()
                .map(Sku::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        );
        self.order(OrderCommand::MarkInventoryUnavailable {
            skus: rejected,
            now: self.at(3),
        })
        .await?;
        self.order(OrderCommand::Cancel {
            reason,
            by: CancelledBy::System,
            now: self.at(4),
        })
        .await
    }
}

fn add_item(line: &PlannedLine, now: DateTime<Utc>) -> CartCommand {
    CartCommand::AddItem {
        sku: line.sku.clone(),
        name: line.name.clone(),
        digital: line.terms.is_some(),
        qty: line.qty,
        unit_price: line.price,
        available: None,
        now,
    }
}
