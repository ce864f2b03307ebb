//! Email notifications end to end: orders placed through GraphQL, the checkout process manager
//! queueing notifications, the worker sending them over real SMTP (a test server on loopback)
//! and recording the outcome on each notification's stream.

mod support;

use std::future::Future;
use std::time::Duration;

use base64::Engine;
use chrono::Utc;
use purser::app::Role;
use purser_command_api::CommandContext;
use purser_command_api::licensing::{self, LicenseSigner};
use purser_domain::Sku;
use purser_domain::license::{LicensePool, LicensePoolCommand};
use serde_json::json;
use support::shop::{CARD_DECLINED, CARD_OK, Shop};
use support::smtp::{ReceivedMail, SmtpServer, free_port};
use support::{TestApp, spawn_app_with};
use uuid::Uuid;

const LIMIT: Duration = Duration::from_secs(30);

/// The UUID inside an opaque GraphQL id (`base64url("Type:uuid")`).
fn uuid_of(global: &str) -> Uuid {
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(global)
        .unwrap_or_else(|_| panic!("{global} is not an opaque id"));
    let raw = String::from_utf8(raw).unwrap();
    let (_, id) = raw.split_once(':').expect("Type:uuid");
    id.parse().unwrap()
}

/// Polls `check` until it yields a value, failing the test after `limit`.
async fn wait_until<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The notifications queued for an order, as (notification id, kind).
async fn queued_for(app: &TestApp, order: Uuid) -> Vec<(Uuid, String)> {
    sqlx::query_as::<_, (String, String)>(
        "select data->>'notification_id', data->>'kind' from es.events
         where event_type = 'NotificationQueued' and data->>'order_id' = $1
         order by global_position",
    )
    .bind(order.to_string())
    .fetch_all(&app.services().pool)
    .await
    .unwrap()
    .into_iter()
    .map(|(id, kind)| (id.parse().unwrap(), kind))
    .collect()
}

fn message_id(id: Uuid) -> String {
    format!("<{id}@purser>")
}

/// Waits for the one notification of `kind` queued for `order` and for its email; returns it.
async fn expect_email(app: &TestApp, smtp: &SmtpServer, order: &str, kind: &str) -> ReceivedMail {
    let order = uuid_of(order);
    let id = wait_until(
        LIMIT,
        &format!("a {kind} notification for {order}"),
        || async {
            let of_kind: Vec<Uuid> = queued_for(app, order)
                .await
                .into_iter()
                .filter(|(_, k)| k == kind)
                .map(|(id, _)| id)
                .collect();
            assert!(
                of_kind.len() <= 1,
                "more than one {kind} notification for {order}"
            );
            of_kind.first().copied()
        },
    )
    .await;
    let wanted = message_id(id);
    let mails = smtp
        .wait_for(LIMIT, &format!("the {kind} email"), |mails| {
            mails
                .iter()
                .any(|m| m.message_id().as_deref() == Some(wanted.as_str()))
        })
        .await;
    let mail = mails
        .into_iter()
        .find(|m| m.message_id().as_deref() == Some(wanted.as_str()))
        .unwrap();
    assert_eq!(mail.to, ["ann@example.com"], "the envelope recipient");
    assert_eq!(mail.from, "shop@purser.local", "the envelope sender");
    assert_eq!(
        mail.header("From").as_deref(),
        Some("Purser <shop@purser.local>")
    );
    assert_eq!(mail.header("To").as_deref(), Some("ann@example.com"));
    mail
}

/// Waits until exactly `expected` notifications were queued and all are sent (the queue is
/// empty), then checks that each reached the SMTP server exactly once and was recorded sent
/// exactly once.
async fn assert_each_delivered_once(app: &TestApp, smtp: &SmtpServer, expected: usize) {
    let pool = &app.services().pool;
    let queued = wait_until(LIMIT, &format!("{expected} notifications sent"), || async {
        let queued: Vec<String> = sqlx::query_scalar(
            "select data->>'notification_id' from es.events where event_type = 'NotificationQueued'",
        )
        .fetch_all(pool)
        .await
        .unwrap();
        let sent: i64 = sqlx::query_scalar(
            "select count(distinct data->>'notification_id') from es.events where event_type = 'NotificationSent'",
        )
        .fetch_one(pool)
        .await
        .unwrap();
        let waiting: i64 = sqlx::query_scalar("select count(*) from purser.notification_queue")
            .fetch_one(pool)
            .await
            .unwrap();
        assert!(
            queued.len() <= expected,
            "more notifications than expected: {queued:?}"
        );
        (queued.len() == expected && sent == expected as i64 && waiting == 0).then_some(queued)
    })
    .await;
    let mails = smtp
        .wait_for(LIMIT, &format!("{expected} emails"), |m| {
            m.len() >= expected
        })
        .await;
    for id in &queued {
        let wanted = message_id(id.parse().unwrap());
        let copies = mails
            .iter()
            .filter(|m| m.message_id().as_deref() == Some(wanted.as_str()))
            .count();
        assert_eq!(copies, 1, "notification {id} was delivered {copies} times");
    }
    assert_eq!(mails.len(), expected, "no email beyond the notifications");
    let recorded: Vec<i64> = sqlx::query_scalar(
        "select count(*) from es.events where event_type = 'NotificationSent'
         group by data->>'notification_id'",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    assert!(
        recorded.iter().all(|n| *n == 1),
        "each is recorded sent once: {recorded:?}"
    );
    // Every outcome belongs to the request that queued the notification: same correlation id,
    // caused by the queued event.
    let strays: Vec<(String, String)> = sqlx::query_as(
        "select o.stream_name, o.event_type from es.events o
         join es.events q on q.stream_name = o.stream_name and q.event_type = 'NotificationQueued'
         where o.event_type in ('NotificationSent', 'NotificationFailed')
           and (o.metadata->>'causation_id' is distinct from q.event_id::text
                or o.metadata->>'correlation_id' is distinct from q.metadata->>'correlation_id'
                or o.metadata->>'actor' is distinct from 'system:notifications')",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    assert_eq!(strays, [], "outcomes outside their notification's request");
}

/// Loads pool keys as an admin: through `licenseKeysLoad` when the schema has it, else by
/// sending the pool command through the app's own command bus.
async fn load_keys(app: &TestApp, shop: &Shop<'_>, sku: &str, keys: &[&str]) {
    let r = shop
        .admin(
            "{ __type(name: \"Mutation\") { fields { name } } }",
            json!({}),
        )
        .await;
    let has_mutation = r["data"]["__type"]["fields"]
        .as_array()
        .is_some_and(|f| f.iter().any(|f| f["name"] == "licenseKeysLoad"));
    if has_mutation {
        let r = shop
            .admin(
                "mutation($i: LicenseKeysLoadInput!) { licenseKeysLoad(input: $i) { userErrors { code message } } }",
                json!({ "i": { "sku": sku, "keys": keys } }),
            )
            .await;
        assert_eq!(r["data"]["licenseKeysLoad"]["userErrors"], json!([]), "{r}");
    } else {
        let sku = Sku::parse(sku).unwrap();
        let cmd = LicensePoolCommand::LoadKeys {
            sku: sku.clone(),
            keys: keys.iter().map(|k| k.to_string()).collect(),
            now: Utc::now(),
        };
        app.services()
            .bus
            .execute::<LicensePool>(&sku, &CommandContext::system("test"), cmd)
            .await
            .expect("the keys load");
    }
}

async fn admin_ok(shop: &Shop<'_>, mutation: &str, vars: serde_json::Value) {
    let r = shop.admin(mutation, vars).await;
    let payload = r["data"].as_object().unwrap().values().next().unwrap();
    assert_eq!(payload["userErrors"], json!([]), "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn license_ready_emails_carry_a_verifiable_key_and_the_download_link() {
    let smtp = SmtpServer::start().await;
    let port = smtp.port().to_string();
    let mut app = spawn_app_with(
        Role::All,
        &[
            ("PURSER_SMTP_PORT", &port),
            ("PURSER_DOWNLOAD_BASE_URL", "https://downloads.purser.test/"),
        ],
    )
    .await;
    let shop = Shop::new(&app).await;

    // A signed license: the key in the email verifies offline with the public key alone.
    shop.digital_product("EDITOR-PRO", 4_900, "SIGNED").await;
    let order = shop.order_from(&[("EDITOR-PRO", 1)], CARD_OK).await;
    let o = shop.wait_for_status(&order, &["FULFILLED"]).await;
    let license_id = uuid_of(o["lines"][0]["licenseId"].as_str().expect("licensed"));
    let mail = expect_email(&app, &smtp, &order, "license_ready").await;
    assert_eq!(
        mail.header("Subject").as_deref(),
        Some("Your license for Software EDITOR-PRO is ready")
    );
    let text = mail.text();
    let key = text
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("PSR1."))
        .unwrap_or_else(|| panic!("no license key in:\n{text}"));
    let seed = app
        .services()
        .config
        .license_signing_key
        .as_ref()
        .expect("tests sign with a fixed key")
        .expose();
    let public_key = LicenseSigner::from_base64(seed)
        .unwrap()
        .public_key_base64();
    let claims = licensing::verify(key, &public_key).expect("the emailed key verifies");
    assert_eq!(claims["sku"], "EDITOR-PRO");
    assert_eq!(claims["license_id"], license_id.to_string());
    let link = format!("https://downloads.purser.test/downloads/EDITOR-PRO?license={license_id}");
    assert!(text.contains(&format!("Download: {link}")), "{text}");
    let html = mail.html().expect("an HTML alternative");
    assert!(html.contains(key), "{html}");
    assert!(html.contains(&format!("href=\"{link}\"")), "{html}");

    // A pool license: the email carries the key the admin loaded.
    shop.digital_product("FONTS-1", 1_900, "POOL").await;
    load_keys(
        &app,
        &shop,
        "FONTS-1",
        &["FONTS-KEY-0001", "FONTS-KEY-0002"],
    )
    .await;
    let order = shop.order_from(&[("FONTS-1", 1)], CARD_OK).await;
    let o = shop.wait_for_status(&order, &["FULFILLED"]).await;
    let license_id = uuid_of(o["lines"][0]["licenseId"].as_str().expect("licensed"));
    let mail = expect_email(&app, &smtp, &order, "license_ready").await;
    let text = mail.text();
    assert!(text.contains("\n    FONTS-KEY-0001\n"), "{text}");
    assert!(
        text.contains(&format!(
            "https://downloads.purser.test/downloads/FONTS-1?license={license_id}"
        )),
        "{text}"
    );

    assert_each_delivered_once(&app, &smtp, 2).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn physical_orders_email_confirmation_shipping_refunds_cancellation_and_payment_failure() {
    let smtp = SmtpServer::start().await;
    let port = smtp.port().to_string();
    let mut app = spawn_app_with(Role::All, &[("PURSER_SMTP_PORT", &port)]).await;
    let shop = Shop::new(&app).await;
    shop.product("LAMP-1", 4_999, 10).await;
    shop.product("BULB-1", 499, 50).await;

    // Paid and confirmed: the confirmation lists the lines and the total.
    let order = shop
        .order_from(&[("LAMP-1", 2), ("BULB-1", 6)], CARD_OK)
        .await;
    let id = uuid_of(&order);
    shop.wait_for_status(&order, &["CONFIRMED"]).await;
    let mail = expect_email(&app, &smtp, &order, "order_confirmed").await;
    assert_eq!(
        mail.header("Subject"),
        Some(format!("Order {id} confirmed"))
    );
    let text = mail.text();
    for expected in [
        "Hello Ann Buyer,",
        "2 x Product LAMP-1 (LAMP-1) at $49.99 = $99.98",
        "6 x Product BULB-1 (BULB-1) at $4.99 = $29.94",
        "Total: $129.92",
    ] {
        assert!(
            text.contains(expected),
            "{expected:?} missing from:\n{text}"
        );
    }
    assert!(mail.html().unwrap().contains("$129.92"));

    // Shipped: carrier, tracking number and estimated delivery.
    admin_ok(
        &shop,
        "mutation($id: ID!) { orderStartProcessing(orderId: $id) { userErrors { code message } } }",
        json!({ "id": order }),
    )
    .await;
    admin_ok(
        &shop,
        "mutation($i: OrderShipInput!) { orderShip(input: $i) { userErrors { code message } } }",
        json!({ "i": { "orderId": order, "trackingNumber": "1Z999AA10123456784", "carrier": "UPS",
                       "estimatedDelivery": "2030-01-15T12:00:00Z" } }),
    )
    .await;
    let mail = expect_email(&app, &smtp, &order, "shipped").await;
    assert_eq!(
        mail.header("Subject"),
        Some(format!("Order {id} has shipped"))
    );
    let text = mail.text();
    for expected in [
        "Carrier: UPS",
        "Tracking number: 1Z999AA10123456784",
        "Estimated delivery: Tuesday 15 January 2030",
    ] {
        assert!(
            text.contains(expected),
            "{expected:?} missing from:\n{text}"
        );
    }

    // A partial refund: the email names the amount of this refund.
    admin_ok(
        &shop,
        "mutation($id: ID!) { orderRefund(input: {orderId: $id, amount: {amount: 500, currency: \"USD\"}, reason: \"scratched\", idempotencyKey: \"r1\"}) { userErrors { code message } } }",
        json!({ "id": order }),
    )
    .await;
    let mail = expect_email(&app, &smtp, &order, "refunded").await;
    assert_eq!(
        mail.header("Subject"),
        Some(format!("Refund of $5.00 for order {id}"))
    );
    assert!(mail.text().contains("Reason: scratched"), "{}", mail.text());

    // A declined card: the payment-failed email says why (and no separate cancellation email).
    let declined = shop.order_from(&[("LAMP-1", 1)], CARD_DECLINED).await;
    shop.wait_for_status(&declined, &["CANCELLED"]).await;
    let mail = expect_email(&app, &smtp, &declined, "payment_failed").await;
    assert_eq!(
        mail.header("Subject"),
        Some(format!("Payment for order {} failed", uuid_of(&declined)))
    );
    let text = mail.text();
    assert!(text.contains("Reason: the card was declined"), "{text}");
    assert!(text.contains("Amount: $49.99"), "{text}");

    // An admin cancels a confirmed order: a cancellation email with the reason, then the
    // refund of the whole amount.
    let cancelled = shop.order_from(&[("BULB-1", 2)], CARD_OK).await;
    shop.wait_for_status(&cancelled, &["CONFIRMED"]).await;
    admin_ok(
        &shop,
        "mutation($id: ID!) { orderCancel(input: {orderId: $id, reason: \"customer called\"}) { userErrors { code message } } }",
        json!({ "id": cancelled }),
    )
    .await;
    shop.wait_for_status(&cancelled, &["REFUNDED"]).await;
    let mail = expect_email(&app, &smtp, &cancelled, "order_cancelled").await;
    let text = mail.text();
    assert!(text.contains("Reason: customer called"), "{text}");
    assert!(text.contains("refunded in full"), "{text}");
    let mail = expect_email(&app, &smtp, &cancelled, "refunded").await;
    assert!(mail.text().contains("Refunded: $9.98"), "{}", mail.text());

    // order: confirmed, shipped, refunded; declined: payment failed; cancelled: confirmed,
    // cancelled, refunded.
    assert_each_delivered_once(&app, &smtp, 7).await;
    let kinds: Vec<String> = queued_for(&app, uuid_of(&declined))
        .await
        .into_iter()
        .map(|(_, k)| k)
        .collect();
    assert_eq!(kinds, ["payment_failed"]);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_smtp_outage_queues_emails_and_each_is_delivered_once_when_it_ends() {
    // Nothing listens on the configured port yet: every connection is refused.
    let port = free_port();
    let port_s = port.to_string();
    let mut app = spawn_app_with(
        Role::All,
        &[
            ("PURSER_SMTP_PORT", &port_s),
            ("PURSER_NOTIFY_BACKOFF_MS", "50"),
            ("PURSER_NOTIFY_MAX_BACKOFF_MS", "300"),
            ("PURSER_NOTIFY_MAX_ATTEMPTS", "1000"),
        ],
    )
    .await;
    let shop = Shop::new(&app).await;
    shop.product("MUG-1", 1_200, 20).await;
    let ok = shop.order_from(&[("MUG-1", 1)], CARD_OK).await;
    let declined = shop.order_from(&[("MUG-1", 1)], CARD_DECLINED).await;
    shop.wait_for_status(&ok, &["CONFIRMED"]).await;
    shop.wait_for_status(&declined, &["CANCELLED"]).await;

    // Both notifications wait in the queue, each failed attempt recorded on its stream.
    let pool = app.services().pool.clone();
    let rows = wait_until(
        LIMIT,
        "two queued notifications that failed twice",
        || async {
            let rows: Vec<(Uuid, String, i32, Option<String>)> = sqlx::query_as(
            "select id, kind, attempts, last_error from purser.notification_queue order by kind",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
            (rows.len() == 2 && rows.iter().all(|r| r.2 >= 2)).then_some(rows)
        },
    )
    .await;
    assert_eq!(rows[0].1, "order_confirmed");
    assert_eq!(rows[1].1, "payment_failed");
    for (id, _, _, error) in &rows {
        let error = error.as_deref().unwrap_or_default();
        assert!(error.starts_with("SMTP: "), "{id}: {error}");
    }
    let failures: Vec<(String, i64)> = sqlx::query_as(
        "select data->>'notification_id', count(*) from es.events
         where event_type = 'NotificationFailed' group by 1",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(failures.len(), 2, "{failures:?}");
    assert!(failures.iter().all(|(_, n)| *n >= 2), "{failures:?}");
    let sent: i64 =
        sqlx::query_scalar("select count(*) from es.events where event_type = 'NotificationSent'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(sent, 0);

    // The server comes up on that port: each waiting email goes out once.
    let mut smtp = SmtpServer::start_on(port).await;
    assert_each_delivered_once(&app, &smtp, 2).await;

    // It goes down again mid-business and comes back on the same port.
    smtp.stop().await;
    let during = shop.order_from(&[("MUG-1", 2)], CARD_OK).await;
    shop.wait_for_status(&during, &["CONFIRMED"]).await;
    wait_until(LIMIT, "the new notification to fail once", || async {
        let attempts: Option<i32> = sqlx::query_scalar(
            "select attempts from purser.notification_queue where order_id = $1",
        )
        .bind(uuid_of(&during))
        .fetch_optional(&pool)
        .await
        .unwrap();
        attempts.filter(|a| *a >= 1)
    })
    .await;
    smtp.restart().await;
    expect_email(&app, &smtp, &during, "order_confirmed").await;
    assert_each_delivered_once(&app, &smtp, 3).await;

    // After a restart nothing is sent again; new notifications still are.
    drop(shop);
    app.restart().await;
    let shop = Shop::new(&app).await;
    let after = shop.order_from(&[("MUG-1", 1)], CARD_OK).await;
    expect_email(&app, &smtp, &after, "order_confirmed").await;
    assert_each_delivered_once(&app, &smtp, 4).await;
    app.stop().await;
}

#[test]
fn the_test_smtp_server_reads_multipart_quoted_printable_and_base64() {
    // The parsing the tests above rely on, pinned on a hand-written message.
    let data = "Subject: Hi\r\n there\r\nMessage-ID: <x@purser>\r\n\
                Content-Type: multipart/alternative;\r\n boundary=\"XX\"\r\n\r\n\
                --XX\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n\
                key=3D1=\r\n2 =C3=A9\r\n\
                --XX\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n\
                PGI+aGk8L2I+\r\n--XX--\r\n";
    let mail = ReceivedMail {
        from: String::new(),
        to: vec![],
        data: data.into(),
    };
    assert_eq!(mail.header("subject").as_deref(), Some("Hi there"));
    assert_eq!(mail.message_id().as_deref(), Some("<x@purser>"));
    assert_eq!(mail.text(), "key=12 é");
    assert_eq!(mail.html().as_deref(), Some("<b>hi</b>"));
}
