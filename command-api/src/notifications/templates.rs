//! The emails themselves: one template per [`NotificationKind`], each rendered as plain text and
//! as HTML from the same content, so the two can never say different things.
//!
//! Rendering is pure: the worker loads the order (and license) from the command side and hands
//! them in; nothing here reads a clock, a database or the network, so the tests below can pin
//! the exact words.

use chrono::{DateTime, Utc};
use purser_domain::license::LicenseState;
use purser_domain::notification::NotificationKind;
use purser_domain::order::OrderState;
use purser_domain::payment::PaymentFailureReason;
use purser_domain::{Money, NotificationId};

/// What a template needs. Everything comes from the command side's own view of the order.
#[derive(Debug, Clone)]
pub struct TemplateInput<'a> {
    pub notification_id: NotificationId,
    pub kind: NotificationKind,
    pub order: &'a OrderState,
    /// The issued license, for `LicenseReady`.
    pub license: Option<&'a LicenseState>,
    /// The refund this notification is about (amount and reason), for `Refunded`.
    pub refund: Option<(Money, String)>,
    /// What the payment gateway said when the charge failed, for `PaymentFailed`.
    pub payment_failure_message: Option<String>,
    /// `PURSER_DOWNLOAD_BASE_URL`, without a trailing slash.
    pub download_base_url: &'a str,
}

/// A rendered email, ready to be put into a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedEmail {
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// The order does not hold what the template needs. Retrying cannot help: the worker gives up
/// on the notification and records why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot render the {kind} email: {missing}")]
pub struct TemplateError {
    pub kind: &'static str,
    pub missing: String,
}

/// One piece of an email's content; both renderings are made from a list of these.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Block {
    Paragraph(String),
    /// `label: value`.
    Field(&'static str, String),
    /// A value to copy exactly (a license key): set apart, monospaced in HTML.
    Code(&'static str, String),
    Link(&'static str, String),
    /// The order's lines and its total.
    Lines(Vec<LineRow>, String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct LineRow {
    name: String,
    sku: String,
    qty: u32,
    unit: String,
    total: String,
}

/// The download link of a licensed product: `{base}/downloads/{sku}?license={license_id}`.
/// SKUs are letters, digits, `-`, `_` and `.`, and ids are UUIDs, so nothing needs escaping.
pub fn download_link(base: &str, license: &LicenseState) -> Option<String> {
    let sku = license.sku.as_ref()?;
    Some(format!(
        "{}/downloads/{}?license={}",
        base.trim_end_matches('/'),
        sku.as_str(),
        license.license_id
    ))
}

/// Renders the email for `input.kind`.
pub fn render(input: &TemplateInput<'_>) -> Result<RenderedEmail, TemplateError> {
    let kind = input.kind.as_str();
    let missing = |what: &str| TemplateError {
        kind,
        missing: what.to_owned(),
    };
    let order = input.order;
    if order.status.is_none() {
        return Err(missing("the order does not exist"));
    }
    let order_ref = order.order_id.to_string();
    let mut blocks = vec![Block::Paragraph(greeting(order))];
    let subject = match input.kind {
        NotificationKind::OrderConfirmed => {
            blocks.push(Block::Paragraph(
                "Thank you for your order. Your payment went through and your order is \
                 confirmed; we will let you know when it ships."
                    .into(),
            ));
            blocks.push(Block::Field("Order", order_ref.clone()));
            blocks.push(lines(order).ok_or_else(|| missing("the order has no total"))?);
            if order.has_digital() {
                blocks.push(Block::Paragraph(
                    "License keys for the software in this order come in a separate email.".into(),
                ));
            }
            format!("Order {order_ref} confirmed")
        }
        NotificationKind::PaymentFailed => {
            blocks.push(Block::Paragraph(
                "We could not take the payment for your order, so it has not been placed and \
                 you have not been charged."
                    .into(),
            ));
            blocks.push(Block::Field("Order", order_ref.clone()));
            let code = order
                .payment_failure
                .as_deref()
                .ok_or_else(|| missing("the order records no payment failure"))?;
            blocks.push(Block::Field(
                "Reason",
                failure_reason(code, input.payment_failure_message.as_deref()),
            ));
            if let Some(total) = order.total {
                blocks.push(Block::Field("Amount", total.formatted()));
            }
            blocks.push(Block::Paragraph(
                "You are welcome to try again with another payment method.".into(),
            ));
            format!("Payment for order {order_ref} failed")
        }
        NotificationKind::LicenseReady => {
            let license = input
                .license
                .ok_or_else(|| missing("no license was given"))?;
            if !license.issued || license.key.is_empty() {
                return Err(missing("the license has not been issued"));
            }
            let sku = license
                .sku
                .as_ref()
                .ok_or_else(|| missing("the license has no SKU"))?;
            let product = order
                .lines
                .iter()
                .find(|l| &l.sku == sku)
                .map_or_else(|| sku.as_str().to_owned(), |l| l.name.clone());
            blocks.push(Block::Paragraph(format!(
                "Your license for {product} is ready. Enter this key when the software asks \
                 for it:"
            )));
            blocks.push(Block::Code("License key", license.key.clone()));
            let link = download_link(input.download_base_url, license)
                .ok_or_else(|| missing("the license has no SKU"))?;
            blocks.push(Block::Link("Download", link));
            blocks.push(Block::Field("Seats", license.seats.to_string()));
            blocks.push(Block::Field(
                "Valid until",
                license
                    .expires_at
                    .map_or_else(|| "no expiry".to_owned(), long_date),
            ));
            blocks.push(Block::Field("Order", order_ref.clone()));
            format!("Your license for {product} is ready")
        }
        NotificationKind::Shipped => {
            let tracking = order
                .tracking
                .as_ref()
                .ok_or_else(|| missing("the order has not shipped"))?;
            blocks.push(Block::Paragraph(
                "Good news: your order is on its way.".into(),
            ));
            blocks.push(Block::Field("Order", order_ref.clone()));
            blocks.push(Block::Field("Carrier", tracking.carrier.clone()));
            blocks.push(Block::Field(
                "Tracking number",
                tracking.tracking_number.clone(),
            ));
            blocks.push(Block::Field(
                "Estimated delivery",
                tracking
                    .estimated_delivery
                    .map_or_else(|| "not given".to_owned(), long_date),
            ));
            if let Some(address) = &order.shipping_address {
                let mut to = vec![address.name.clone(), address.line1.clone()];
                to.extend(address.line2.clone());
                to.push(format!("{} {}", address.postal_code, address.city));
                to.push(address.country.clone());
                blocks.push(Block::Field("Shipping to", to.join(", ")));
            }
            format!("Order {order_ref} has shipped")
        }
        NotificationKind::Refunded => {
            let (amount, reason) = input
                .refund
                .clone()
                .ok_or_else(|| missing("the order records no refund"))?;
            blocks.push(Block::Paragraph(format!(
                "We have refunded {} to your original payment method. Depending on your bank it \
                 can take a few days to appear.",
                amount.formatted()
            )));
            blocks.push(Block::Field("Order", order_ref.clone()));
            blocks.push(Block::Field("Refunded", amount.formatted()));
            if !reason.trim().is_empty() {
                blocks.push(Block::Field("Reason", reason));
            }
            if let Some(total) = order.refunded_amount.filter(|t| *t != amount) {
                blocks.push(Block::Field("Refunded in total", total.formatted()));
            }
            format!("Refund of {} for order {order_ref}", amount.formatted())
        }
        NotificationKind::OrderCancelled => {
            let cancellation = order
                .cancellation
                .as_ref()
                .ok_or_else(|| missing("the order has not been cancelled"))?;
            blocks.push(Block::Paragraph("Your order has been cancelled.".into()));
            blocks.push(Block::Field("Order", order_ref.clone()));
            let reason = if cancellation.reason.trim().is_empty() {
                "none given".to_owned()
            } else {
                cancellation.reason.clone()
            };
            blocks.push(Block::Field("Reason", reason));
            blocks.push(Block::Paragraph(if cancellation.was_paid {
                "Your payment will be refunded in full; you will get a separate email when it \
                 is."
                .into()
            } else {
                "You have not been charged.".into()
            }));
            format!("Order {order_ref} was cancelled")
        }
        // Account emails are written by `account_mail`, from the account, not an order.
        NotificationKind::VerifyEmail | NotificationKind::PasswordReset => {
            return Err(missing("an account link (this is an account email)"));
        }
    };
    blocks.push(Block::Paragraph("Thank you for shopping with us.".into()));
    Ok(RenderedEmail {
        subject,
        text: to_text(&blocks, input.notification_id),
        html: to_html(&blocks, input.notification_id),
    })
}

fn greeting(order: &OrderState) -> String {
    match order
        .shipping_address
        .as_ref()
        .map(|a| a.name.trim())
        .filter(|n| !n.is_empty())
    {
        Some(name) => format!("Hello {name},"),
        None => "Hello,".to_owned(),
    }
}

fn lines(order: &OrderState) -> Option<Block> {
    let rows = order
        .lines
        .iter()
        .map(|l| LineRow {
            name: l.name.clone(),
            sku: l.sku.as_str().to_owned(),
            qty: l.qty.get(),
            unit: l.unit_price.formatted(),
            total: l.line_total.formatted(),
        })
        .collect();
    Some(Block::Lines(rows, order.total?.formatted()))
}

/// Words for a customer, from the payment failure code; the gateway's own message is used for
/// codes this build does not know.
fn failure_reason(code: &str, message: Option<&str>) -> String {
    let known = [
        (
            PaymentFailureReason::InsufficientFunds,
            "the card has insufficient funds",
        ),
        (
            PaymentFailureReason::InvalidPaymentDetails,
            "the card details were not accepted",
        ),
        (PaymentFailureReason::Declined, "the card was declined"),
        (
            PaymentFailureReason::GatewayTimeout,
            "the payment provider did not answer in time",
        ),
    ];
    match known.iter().find(|(r, _)| r.code() == code) {
        Some((_, words)) => (*words).to_owned(),
        None => message
            .filter(|m| !m.trim().is_empty())
            .unwrap_or(code)
            .to_owned(),
    }
}

fn long_date(at: DateTime<Utc>) -> String {
    at.format("%A %-d %B %Y").to_string()
}

pub(super) fn to_text(blocks: &[Block], id: NotificationId) -> String {
    let mut out = String::new();
    for block in blocks {
        match block {
            Block::Paragraph(p) => out.push_str(p),
            Block::Field(label, value) => out.push_str(&format!("{label}: {value}")),
            // The key sits alone on its line so it can be copied without stray characters.
            Block::Code(label, value) => out.push_str(&format!("{label}:\n\n    {value}")),
            Block::Link(label, url) => out.push_str(&format!("{label}: {url}")),
            Block::Lines(rows, total) => {
                for r in rows {
                    out.push_str(&format!(
                        "  {} x {} ({}) at {} = {}\n",
                        r.qty, r.name, r.sku, r.unit, r.total
                    ));
                }
                out.push_str(&format!("Total: {total}"));
            }
        }
        out.push_str("\n\n");
    }
    out.push_str(&format!("-- \nPurser (notification {id})\n"));
    out
}

/// Escapes text for HTML element content and attribute values.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

pub(super) fn to_html(blocks: &[Block], id: NotificationId) -> String {
    let mut out = String::from(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"></head>\n\
         <body style=\"font-family: sans-serif; line-height: 1.4\">\n",
    );
    for block in blocks {
        match block {
            Block::Paragraph(p) => out.push_str(&format!("<p>{}</p>\n", esc(p))),
            Block::Field(label, value) => {
                out.push_str(&format!("<p><strong>{}:</strong> {}</p>\n", esc(label), esc(value)))
            }
            Block::Code(label, value) => out.push_str(&format!(
                "<p><strong>{}:</strong></p>\n<pre style=\"white-space: pre-wrap; word-break: break-all\"><code>{}</code></pre>\n",
                esc(label),
                esc(value)
            )),
            Block::Link(label, url) => out.push_str(&format!(
                "<p><strong>{}:</strong> <a href=\"{}\">{}</a></p>\n",
                esc(label),
                esc(url),
                esc(url)
            )),
            Block::Lines(rows, total) => {
                out.push_str("<table cellpadding=\"4\">\n<tr><th align=\"left\">Item</th><th>Qty</th><th align=\"right\">Price</th><th align=\"right\">Total</th></tr>\n");
                for r in rows {
                    out.push_str(&format!(
                        "<tr><td>{} <small>({})</small></td><td align=\"center\">{}</td><td align=\"right\">{}</td><td align=\"right\">{}</td></tr>\n",
                        esc(&r.name),
                        esc(&r.sku),
                        r.qty,
                        esc(&r.unit),
                        esc(&r.total)
                    ));
                }
                out.push_str(&format!(
                    "<tr><td colspan=\"3\" align=\"right\"><strong>Total</strong></td><td align=\"right\"><strong>{}</strong></td></tr>\n</table>\n",
                    esc(total)
                ));
            }
        }
    }
    out.push_str(&format!(
        "<p style=\"color: #777; font-size: small\">Purser (notification {id})</p>\n</body></html>\n"
    ));
    out
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use purser_domain::order::{
        Cancellation, CancelledBy, OrderLine, OrderStatus, ShippingAddress, Tracking,
    };
    use purser_domain::{Currency, LicenseId, OrderId, Quantity, Sku};

    use super::*;

    fn usd(minor: i64) -> Money {
        Money::new(minor, Currency::parse("USD").unwrap())
    }

    fn order() -> OrderState {
        let line = |sku: &str, name: &str, qty: i64, price: i64| {
            OrderLine::new(
                Sku::parse(sku).unwrap(),
                name,
                Quantity::new(qty).unwrap(),
                usd(price),
                None,
            )
            .unwrap()
        };
        OrderState {
            status: Some(OrderStatus::Confirmed),
            order_id: OrderId::derived(&["template-order"]),
            lines: vec![
                line("LAMP-1", "Desk <Lamp>", 2, 4_999),
                line("BULB-1", "Bulb", 6, 499),
            ],
            total: Some(usd(2 * 4_999 + 6 * 499)),
            shipping_address: Some(
                ShippingAddress::parse(
                    "Ann Buyer",
                    "1 Main St",
                    None,
                    "Springfield",
                    "12345",
                    "us",
                )
                .unwrap(),
            ),
            ..OrderState::default()
        }
    }

    fn input(kind: NotificationKind, order: &OrderState) -> TemplateInput<'_> {
        TemplateInput {
            notification_id: NotificationId::derived(&["template", kind.as_str()]),
            kind,
            order,
            license: None,
            refund: None,
            payment_failure_message: None,
            download_base_url: "https://shop.example/",
        }
    }

    #[test]
    fn order_confirmed_lists_lines_and_total_and_escapes_html() {
        let o = order();
        let email = render(&input(NotificationKind::OrderConfirmed, &o)).unwrap();
        assert_eq!(email.subject, format!("Order {} confirmed", o.order_id));
        assert!(
            email.text.starts_with("Hello Ann Buyer,\n\n"),
            "{}",
            email.text
        );
        assert!(
            email
                .text
                .contains("2 x Desk <Lamp> (LAMP-1) at $49.99 = $99.98"),
            "{}",
            email.text
        );
        assert!(
            email.text.contains("6 x Bulb (BULB-1) at $4.99 = $29.94"),
            "{}",
            email.text
        );
        assert!(email.text.contains("Total: $129.92"), "{}", email.text);
        assert!(email.html.contains("Desk &lt;Lamp&gt;"), "{}", email.html);
        assert!(!email.html.contains("<Lamp>"), "{}", email.html);
    }

    #[test]
    fn payment_failed_explains_the_reason() {
        let mut o = order();
        o.status = Some(OrderStatus::PaymentFailed);
        o.payment_failure = Some("insufficient_funds".into());
        let email = render(&input(NotificationKind::PaymentFailed, &o)).unwrap();
        assert!(
            email
                .text
                .contains("Reason: the card has insufficient funds"),
            "{}",
            email.text
        );
        // A code this build does not know falls back to the gateway's message.
        o.payment_failure = Some("fraud_suspected".into());
        let mut i = input(NotificationKind::PaymentFailed, &o);
        i.payment_failure_message = Some("Blocked by the bank".into());
        assert!(
            render(&i)
                .unwrap()
                .text
                .contains("Reason: Blocked by the bank")
        );
        // Without a recorded failure there is nothing truthful to say.
        o.payment_failure = None;
        let e = render(&input(NotificationKind::PaymentFailed, &o)).unwrap_err();
        assert!(e.to_string().contains("payment_failed"), "{e}");
    }

    #[test]
    fn license_ready_carries_the_key_and_the_download_link() {
        let o = order();
        let license = LicenseState {
            issued: true,
            license_id: LicenseId::derived(&["template-license"]),
            sku: Some(Sku::parse("LAMP-1").unwrap()),
            seats: 3,
            key: "PSR1.abc.def".into(),
            expires_at: Some(Utc.with_ymd_and_hms(2027, 3, 5, 0, 0, 0).unwrap()),
            ..LicenseState::default()
        };
        let mut i = input(NotificationKind::LicenseReady, &o);
        i.license = Some(&license);
        let email = render(&i).unwrap();
        assert_eq!(email.subject, "Your license for Desk <Lamp> is ready");
        assert!(
            email.text.contains("\n    PSR1.abc.def\n"),
            "{}",
            email.text
        );
        let link = format!(
            "https://shop.example/downloads/LAMP-1?license={}",
            license.license_id
        );
        assert!(
            email.text.contains(&format!("Download: {link}")),
            "{}",
            email.text
        );
        assert!(
            email.text.contains("Valid until: Friday 5 March 2027"),
            "{}",
            email.text
        );
        assert!(
            email.html.contains(&format!("href=\"{link}\"")),
            "{}",
            email.html
        );
        // A license that was never issued has no key to send.
        let unissued = LicenseState {
            issued: false,
            ..license.clone()
        };
        i.license = Some(&unissued);
        assert!(render(&i).is_err());
    }

    #[test]
    fn shipped_refunded_and_cancelled_say_what_happened() {
        let mut o = order();
        o.tracking = Some(Tracking {
            tracking_number: "1Z999".into(),
            carrier: "UPS".into(),
            estimated_delivery: Some(Utc.with_ymd_and_hms(2026, 6, 5, 12, 0, 0).unwrap()),
            shipped_at: Utc.with_ymd_and_hms(2026, 6, 1, 12, 0, 0).unwrap(),
        });
        let shipped = render(&input(NotificationKind::Shipped, &o)).unwrap();
        for expected in [
            "Carrier: UPS",
            "Tracking number: 1Z999",
            "Estimated delivery: Friday 5 June 2026",
        ] {
            assert!(
                shipped.text.contains(expected),
                "{expected} missing: {}",
                shipped.text
            );
        }

        o.refunded_amount = Some(usd(1_500));
        let mut i = input(NotificationKind::Refunded, &o);
        i.refund = Some((usd(500), "scratched".into()));
        let refunded = render(&i).unwrap();
        assert_eq!(
            refunded.subject,
            format!("Refund of $5.00 for order {}", o.order_id)
        );
        assert!(
            refunded.text.contains("Reason: scratched"),
            "{}",
            refunded.text
        );
        assert!(
            refunded.text.contains("Refunded in total: $15.00"),
            "{}",
            refunded.text
        );

        o.cancellation = Some(Cancellation {
            reason: "customer called".into(),
            by: CancelledBy::Admin,
            was_paid: true,
            at: Utc.with_ymd_and_hms(2026, 6, 1, 12, 0, 0).unwrap(),
        });
        let cancelled = render(&input(NotificationKind::OrderCancelled, &o)).unwrap();
        assert!(
            cancelled.text.contains("Reason: customer called"),
            "{}",
            cancelled.text
        );
        assert!(
            cancelled.text.contains("refunded in full"),
            "{}",
            cancelled.text
        );
    }

    #[test]
    fn an_order_that_does_not_exist_renders_nothing() {
        let o = OrderState::default();
        assert!(render(&input(NotificationKind::OrderConfirmed, &o)).is_err());
    }
}
