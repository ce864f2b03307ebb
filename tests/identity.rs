//! Identity and access, tried as an attacker would against the real server: a guest checkout
//! never signs anyone into an account, an address must be proved before a guest's orders are
//! claimed, reset links work once, sessions end on sign-out and revocation, and password
//! guessing is throttled.

mod support;

use std::time::Duration;

use purser::app::Role;
use purser_domain::customer::Role as AccountRole;
use serde_json::{Value, json};
use support::shop::{CARD_OK, Shop};
use support::smtp::{ReceivedMail, SmtpServer};
use support::{TestApp, spawn_app_with};

const PASSWORD: &str = "correct horse battery";

async fn app_with_mail() -> (TestApp, SmtpServer) {
    let smtp = SmtpServer::start().await;
    let port = smtp.port().to_string();
    let app = spawn_app_with(
        Role::All,
        &[
            ("PURSER_SMTP_PORT", &port),
            ("PURSER_SESSION_CHECK_SECS", "1"),
        ],
    )
    .await;
    (app, smtp)
}

async fn guest_checkout(shop: &Shop<'_>, sku: &str, email: &str) -> (String, String) {
    let cart = shop.cart(&[(sku, 1)]).await;
    let r = shop
        .app
        .graphql(
            "mutation($i: CartCheckoutInput!) { cartCheckout(input: $i) { orderId statusToken userErrors { code } } }",
            json!({ "i": { "cartId": cart, "idempotencyKey": "k", "email": email, "paymentMethod": CARD_OK } }),
        )
        .await;
    let p = &r["data"]["cartCheckout"];
    assert_eq!(p["userErrors"], json!([]), "{r}");
    (
        p["orderId"].as_str().unwrap().to_owned(),
        p["statusToken"].as_str().unwrap().to_owned(),
    )
}

async fn status(app: &TestApp, order: &str, token: &str) -> Value {
    let r = app
        .graphql(
            "query($o: ID!, $t: String!) { checkoutStatus(orderId: $o, statusToken: $t) { order { status } signInToken } }",
            json!({ "o": order, "t": token }),
        )
        .await;
    r["data"]["checkoutStatus"].clone()
}

async fn until_fulfilled(app: &TestApp, order: &str, token: &str) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let s = status(app, order, token).await;
        if s["order"]["status"] == "FULFILLED" {
            return s;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never fulfilled: {s}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn login(app: &TestApp, email: &str, password: &str) -> Value {
    let r = app
        .graphql(
            "mutation($e: String!, $p: String!) { customerLogin(input: {email: $e, password: $p}) { token refreshToken account { id verified } userErrors { code message } } }",
            json!({ "e": email, "p": password }),
        )
        .await;
    r["data"]["customerLogin"].clone()
}

async fn register(app: &TestApp, email: &str) -> Value {
    let r = app
        .graphql(
            "mutation($e: String!, $p: String!) { customerRegister(input: {email: $e, password: $p}) { token account { id verified guest } userErrors { code } } }",
            json!({ "e": email, "p": PASSWORD }),
        )
        .await;
    let p = r["data"]["customerRegister"].clone();
    assert_eq!(p["userErrors"], json!([]), "{r}");
    p
}

/// The token in an account email's link.
fn link_token(mail: &ReceivedMail) -> String {
    let text = mail.text();
    let at = text.find("?token=").expect("a link in the email") + "?token=".len();
    text[at..].split_whitespace().next().unwrap().to_owned()
}

async fn mail_to(smtp: &SmtpServer, to: &str, subject: &str) -> ReceivedMail {
    let matches = |m: &ReceivedMail| {
        m.header("To").is_some_and(|t| t.contains(to))
            && m.header("Subject").is_some_and(|s| s == subject)
    };
    let mails = smtp
        .wait_for(Duration::from_secs(30), subject, |ms| {
            ms.iter().any(matches)
        })
        .await;
    mails.into_iter().find(|m| matches(m)).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_checkout_under_a_staff_email_signs_nobody_into_that_account() {
    let (mut app, _smtp) = app_with_mail().await;
    let shop = Shop::new(&app).await;
    shop.digital_product("AV-1Y", 4_999, "SIGNED").await;
    app.admin_token().await;
    let staff = login(&app, "admin@purser.test", PASSWORD).await;
    let staff_id = staff["account"]["id"].as_str().unwrap().to_owned();

    let (order, token) = guest_checkout(&shop, "AV-1Y", "admin@purser.test").await;
    let s = until_fulfilled(&app, &order, &token).await;
    let sign_in = s["signInToken"]
        .as_str()
        .expect("a guest gets its own sign-in");
    let exchange = "mutation($t: String!) { customerSignInWithToken(token: $t) { token account { id email roles guest } userErrors { code } } }";
    let r = app.graphql(exchange, json!({ "t": sign_in })).await;
    let p = &r["data"]["customerSignInWithToken"];
    assert_eq!(p["userErrors"], json!([]), "{r}");
    assert_ne!(
        p["account"]["id"],
        json!(staff_id),
        "the guest identity is not the account"
    );
    assert_eq!(
        (p["account"]["roles"].clone(), p["account"]["guest"].clone()),
        (json!(["customer"]), json!(true))
    );
    let session = p["token"].as_str().unwrap();
    let create = "mutation { productCreate(input: {sku: \"X-1\", name: \"x\", price: {amount: \"1\", currency: \"USD\"}}) { userErrors { code } } }";
    let r = app.graphql_as(session, create, json!({})).await;
    assert_eq!(r["errors"][0]["extensions"]["code"], "FORBIDDEN", "{r}");
    let again = app.graphql(exchange, json!({ "t": sign_in })).await;
    assert_eq!(
        again["data"]["customerSignInWithToken"]["userErrors"][0]["code"],
        "TOKEN_ALREADY_USED"
    );

    // Ten minutes after fulfilment the token is gone, however often the status is asked for.
    sqlx::query("update sales.orders set fulfilled_at = fulfilled_at - interval '11 minutes'")
        .execute(&app.services().pool)
        .await
        .unwrap();
    assert!(status(&app, &order, &token).await["signInToken"].is_null());

    // A signed-in customer's own checkout never hands out a sign-in token.
    let ann = app.token_for("ann@example.com", &[]).await;
    let cart = shop.cart(&[("AV-1Y", 1)]).await;
    let r = app
        .graphql_as(
            &ann,
            "mutation($i: CartCheckoutInput!) { cartCheckout(input: $i) { orderId statusToken userErrors { code } } }",
            json!({ "i": { "cartId": cart, "idempotencyKey": "own", "email": "admin@purser.test", "paymentMethod": CARD_OK } }),
        )
        .await;
    let p = &r["data"]["cartCheckout"];
    let (order, token) = (
        p["orderId"].as_str().unwrap(),
        p["statusToken"].as_str().unwrap(),
    );
    assert!(until_fulfilled(&app, order, token).await["signInToken"].is_null());
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claiming_a_guests_orders_needs_the_emailed_proof() {
    let (mut app, smtp) = app_with_mail().await;
    let shop = Shop::new(&app).await;
    shop.digital_product("AV-1Y", 4_999, "SIGNED").await;
    let (order, token) = guest_checkout(&shop, "AV-1Y", "victim@example.com").await;
    until_fulfilled(&app, &order, &token).await;

    let account = register(&app, "victim@example.com").await;
    assert_eq!(account["account"]["verified"], false);
    let session = account["token"].as_str().unwrap();
    let mine = "{ me { orders(first: 10) { edges { node { id } } } licenses { key } } }";
    app.settle().await;
    let r = app.graphql_as(session, mine, json!({})).await;
    assert_eq!(
        r["data"]["me"]["orders"]["edges"],
        json!([]),
        "an unverified account sees no guest order: {r}"
    );
    assert_eq!(r["data"]["me"]["licenses"], json!([]), "{r}");
    let claim =
        "mutation { customerClaimGuestOrders { claimedOrders more position userErrors { code } } }";
    let r = app.graphql_as(session, claim, json!({})).await;
    assert_eq!(
        r["data"]["customerClaimGuestOrders"]["userErrors"][0]["code"],
        "EMAIL_NOT_VERIFIED"
    );

    let mail = mail_to(&smtp, "victim@example.com", "Confirm your email address").await;
    let verify = "mutation($t: String!) { customerVerifyEmail(token: $t) { account { verified } userErrors { code } } }";
    let r = app.graphql(verify, json!({ "t": "forged" })).await;
    assert_eq!(
        r["data"]["customerVerifyEmail"]["userErrors"][0]["code"],
        "INVALID_TOKEN"
    );
    let r = app.graphql(verify, json!({ "t": link_token(&mail) })).await;
    assert_eq!(
        r["data"]["customerVerifyEmail"]["account"]["verified"], true,
        "{r}"
    );

    let r = app.graphql_as(session, claim, json!({})).await;
    let claimed = &r["data"]["customerClaimGuestOrders"];
    assert_eq!(claimed["claimedOrders"], json!([order]), "{r}");
    app.settle().await;
    let r = app.graphql_as(session, mine, json!({})).await;
    assert_eq!(
        r["data"]["me"]["orders"]["edges"][0]["node"]["id"],
        json!(order),
        "{r}"
    );
    assert_eq!(
        r["data"]["me"]["licenses"].as_array().unwrap().len(),
        1,
        "{r}"
    );

    // Registration sent exactly one verification email.
    app.settle().await;
    let sent = smtp
        .mails()
        .iter()
        .filter(|m| m.header("Subject").as_deref() == Some("Confirm your email address"))
        .count();
    assert_eq!(sent, 1);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_link_works_once_and_ends_every_session() {
    let (mut app, smtp) = app_with_mail().await;
    let session = register(&app, "bea@example.com").await["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let ask =
        "mutation($e: String!) { customerRequestPasswordReset(email: $e) { userErrors { code } } }";
    for email in ["bea@example.com", "nobody@example.com"] {
        let r = app.graphql(ask, json!({ "e": email })).await;
        assert_eq!(
            r["data"]["customerRequestPasswordReset"]["userErrors"],
            json!([]),
            "the same answer for both"
        );
    }
    let mail = mail_to(&smtp, "bea@example.com", "Reset your password").await;
    let reset = "mutation($t: String!, $p: String!) { customerResetPassword(token: $t, newPassword: $p) { userErrors { code } } }";
    let vars = json!({ "t": link_token(&mail), "p": "a brand new password" });
    let r = app.graphql(reset, vars.clone()).await;
    assert_eq!(
        r["data"]["customerResetPassword"]["userErrors"],
        json!([]),
        "{r}"
    );
    let again = app.graphql(reset, vars).await;
    assert_eq!(
        again["data"]["customerResetPassword"]["userErrors"][0]["code"],
        "INVALID_TOKEN"
    );

    let me = app
        .graphql_as(&session, "{ me { customer { email } } }", json!({}))
        .await;
    assert_eq!(
        me["errors"][0]["extensions"]["code"], "UNAUTHENTICATED",
        "{me}"
    );
    assert_eq!(
        login(&app, "bea@example.com", PASSWORD).await["userErrors"][0]["code"],
        "INVALID_CREDENTIALS"
    );
    assert!(login(&app, "bea@example.com", "a brand new password").await["token"].is_string());
    assert!(
        !smtp
            .mails()
            .iter()
            .any(|m| m.header("To").is_some_and(|t| t.contains("nobody@")))
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_out_refresh_and_revocation_end_access() {
    let (mut app, _smtp) = app_with_mail().await;
    let admin = app.admin_token().await;
    app.token_for("aud@example.com", &[AccountRole::Auditor])
        .await;
    let s = login(&app, "aud@example.com", PASSWORD).await;
    let (token, refresh) = (
        s["token"].as_str().unwrap(),
        s["refreshToken"].as_str().unwrap(),
    );
    let history = "{ streamHistory(stream: \"customer-x\") { edges { cursor } } }";
    let r = app.graphql_as(token, history, json!({})).await;
    assert!(r.get("errors").is_none(), "an auditor reads history: {r}");

    // Refreshing replaces the refresh token; presenting the old one again ends the session.
    let renew = "mutation($r: String!) { customerRefreshSession(refreshToken: $r) { token refreshToken userErrors { code } } }";
    let r = app.graphql(renew, json!({ "r": refresh })).await;
    let fresh = r["data"]["customerRefreshSession"]["token"]
        .as_str()
        .expect("renewed")
        .to_owned();
    let r = app.graphql(renew, json!({ "r": refresh })).await;
    assert_eq!(
        r["data"]["customerRefreshSession"]["userErrors"][0]["code"],
        "INVALID_TOKEN"
    );
    tokio::time::sleep(Duration::from_millis(1100)).await; // the session check's cache (1 s here)
    let r = app.graphql_as(&fresh, history, json!({})).await;
    assert_eq!(
        r["errors"][0]["extensions"]["code"], "UNAUTHENTICATED",
        "a copied refresh token ends the session: {r}"
    );

    // Revoking the role ends it for live sessions within the session check's lifetime.
    let s = login(&app, "aud@example.com", PASSWORD).await;
    let token = s["token"].as_str().unwrap().to_owned();
    let revoke = "mutation { customerRevokeRole(email: \"aud@example.com\", role: AUDITOR) { userErrors { code } } }";
    let r = app.graphql_as(&admin, revoke, json!({})).await;
    assert_eq!(
        r["data"]["customerRevokeRole"]["userErrors"],
        json!([]),
        "{r}"
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let r = app.graphql_as(&token, history, json!({})).await;
        if r["errors"][0]["extensions"]["code"] == "FORBIDDEN" {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still an auditor: {r}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Signing out ends the session at once.
    let r = app
        .graphql_as(
            &token,
            "mutation { customerLogout { userErrors { code } } }",
            json!({}),
        )
        .await;
    assert_eq!(r["data"]["customerLogout"]["userErrors"], json!([]), "{r}");
    let r = app
        .graphql_as(&token, "{ me { customer { email } } }", json!({}))
        .await;
    assert_eq!(
        r["errors"][0]["extensions"]["code"], "UNAUTHENTICATED",
        "{r}"
    );
    // Disabling an account ends its sessions and refuses sign-in.
    let gus = app.token_for("gus@example.com", &[]).await;
    let disable = "mutation { customerDisable(email: \"gus@example.com\", reason: \"chargebacks\") { userErrors { code } } }";
    let r = app.graphql_as(&admin, disable, json!({})).await;
    assert_eq!(r["data"]["customerDisable"]["userErrors"], json!([]), "{r}");
    let r = app
        .graphql_as(&gus, "{ me { customer { email } } }", json!({}))
        .await;
    assert_eq!(
        r["errors"][0]["extensions"]["code"], "UNAUTHENTICATED",
        "{r}"
    );
    assert!(login(&app, "gus@example.com", PASSWORD).await["token"].is_null());
    // Operational status is for admins.
    let r = app
        .graphql("{ projections { name owner } }", json!({}))
        .await;
    assert_eq!(
        r["errors"][0]["extensions"]["code"], "UNAUTHENTICATED",
        "{r}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_eleventh_wrong_password_in_a_minute_is_throttled_for_that_account_only() {
    let (mut app, _smtp) = app_with_mail().await;
    app.token_for("cat@example.com", &[]).await;
    app.token_for("dan@example.com", &[]).await;
    for _ in 0..10 {
        let r = login(&app, "cat@example.com", "wrong password").await;
        assert_eq!(r["userErrors"][0]["code"], "INVALID_CREDENTIALS", "{r}");
    }
    let r = login(&app, "cat@example.com", PASSWORD).await;
    assert_eq!(r["userErrors"][0]["code"], "TOO_MANY_ATTEMPTS", "{r}");
    assert!(
        r["userErrors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("retryAfter=")
    );
    // An unknown address answers exactly like a known one.
    let unknown = login(&app, "nobody@example.com", "wrong password").await;
    assert_eq!(unknown["userErrors"][0]["code"], "INVALID_CREDENTIALS");
    assert!(login(&app, "dan@example.com", PASSWORD).await["token"].is_string());
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_and_exports_never_show_a_password_hash() {
    let (mut app, _smtp) = app_with_mail().await;
    let auditor = app
        .token_for("audit@example.com", &[AccountRole::Auditor])
        .await;
    register(&app, "eve@example.com").await;
    // An account from before credentials left the log: its v1 event still carries a hash.
    let legacy = purser_domain::Email::parse("old@example.com").unwrap();
    let id = purser_domain::CustomerId::for_email(&legacy);
    let hasher = purser_command_api::accounts::Hasher::new(1, Duration::from_secs(5));
    let password = purser_command_api::accounts::Password::parse(PASSWORD.into()).unwrap();
    let phc = hasher.hash(password).await.unwrap();
    let stream = purser_event_store::StreamName::new(format!("customer-{id}")).unwrap();
    let v1 = purser_event_store::NewEvent {
        id: uuid::Uuid::new_v4(),
        event_type: "CustomerRegistered".into(),
        schema_version: 1,
        data: json!({ "customer_id": id, "email": "old@example.com", "name": "Old",
                      "password_hash": phc,
                      "at": "2025-01-01T00:00:00Z" }),
        metadata: Default::default(),
    };
    let store = &app.services().store;
    store
        .append(
            &stream,
            purser_event_store::ExpectedVersion::NoStream,
            vec![v1],
        )
        .await
        .unwrap();
    // The legacy account still signs in, and its hash moves to the credentials table.
    app.settle().await;
    assert!(login(&app, "old@example.com", PASSWORD).await["token"].is_string());
    let moved: i64 =
        sqlx::query_scalar("select count(*) from purser.credentials where customer_id = $1")
            .bind(id.as_uuid())
            .fetch_one(&app.services().pool)
            .await
            .unwrap();
    assert_eq!(moved, 1);
    for email in ["eve@example.com", "old@example.com"] {
        let stream = format!(
            "customer-{}",
            purser_domain::CustomerId::for_email(&purser_domain::Email::parse(email).unwrap())
        );
        let r = app
            .graphql_as(
                &auditor,
                "query($s: String!) { streamHistory(stream: $s) { edges { node { type data } } } }",
                json!({ "s": stream }),
            )
            .await;
        let text = r.to_string();
        assert!(text.contains("CustomerRegistered"), "{r}");
        assert!(
            !text.contains("argon2") && !text.contains("password_hash"),
            "{r}"
        );
    }
    let mut out = Vec::new();
    let filter = purser::audit::export::ExportFilter {
        category: Some("customer".into()),
        ..Default::default()
    };
    let mut progress = purser::audit::progress::Progress::silent("export");
    purser::audit::export::export(&**store, None, &filter, &mut out, &mut progress)
        .await
        .unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(
        text.contains("eve@example.com") && !text.contains("argon2"),
        "{text}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guest_orders_from_before_guest_identities_stay_hidden_until_the_address_is_proved() {
    use purser_domain::order::{OrderEvent, OrderLine};
    use purser_domain::{Currency, CustomerId, Email, Event, Money, OrderId, Quantity, Sku};
    let (mut app, smtp) = app_with_mail().await;
    // A guest order written by an older version: it sits on the address's account id.
    let email = Email::parse("fay@example.com").unwrap();
    let order_id = OrderId::new();
    let price = Money::new(1_000, Currency::USD);
    let line = OrderLine::new(
        Sku::parse("OLD-1").unwrap(),
        "Old",
        Quantity::new(1).unwrap(),
        price,
        None,
    )
    .unwrap();
    let placed = OrderEvent::OrderPlaced {
        order_id,
        customer_id: CustomerId::for_email(&email),
        email: email.clone(),
        lines: vec![line],
        total: price,
        cart_id: None,
        payment_method: purser_domain::payment::PaymentMethod::parse(CARD_OK).unwrap(),
        shipping_address: None,
        at: chrono::Utc::now() - chrono::Duration::days(30),
    };
    let (event_type, schema_version, data) = placed.encode();
    let stream = purser_event_store::StreamName::new(format!("order-{order_id}")).unwrap();
    let event = purser_event_store::NewEvent {
        id: uuid::Uuid::new_v4(),
        event_type: event_type.into(),
        schema_version,
        data,
        metadata: Default::default(),
    };
    let store = &app.services().store;
    store
        .append(
            &stream,
            purser_event_store::ExpectedVersion::NoStream,
            vec![event],
        )
        .await
        .unwrap();

    let session = register(&app, "fay@example.com").await["token"]
        .as_str()
        .unwrap()
        .to_owned();
    app.settle().await;
    let mine = "{ me { orders(first: 5) { edges { node { id } } } } }";
    let r = app.graphql_as(&session, mine, json!({})).await;
    assert_eq!(r["data"]["me"]["orders"]["edges"], json!([]), "{r}");
    let id = purser_api_core::wire::global_id("Order", &order_id.to_string());
    let one = "query($o: ID!) { order(id: $o) { id } }";
    let r = app.graphql_as(&session, one, json!({ "o": id })).await;
    assert!(r["data"]["order"].is_null(), "{r}");

    let mail = mail_to(&smtp, "fay@example.com", "Confirm your email address").await;
    let verify = "mutation($t: String!) { customerVerifyEmail(token: $t) { userErrors { code } } }";
    app.graphql(verify, json!({ "t": link_token(&mail) })).await;
    app.settle().await;
    let r = app.graphql_as(&session, mine, json!({})).await;
    assert_eq!(
        r["data"]["me"]["orders"]["edges"][0]["node"]["id"],
        json!(id),
        "{r}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ended_sessions_and_stale_throttle_rows_are_pruned() {
    let db = purser_testkit::TestDb::new().await;
    let pool = db.pool().await;
    for (ended, expires) in [
        ("now() - interval '2 days'", "now() + interval '1 day'"),
        ("null", "now() + interval '1 day'"),
        ("null", "now() - interval '3 days'"),
    ] {
        sqlx::query(&format!(
            "insert into purser.sessions (id, customer_id, refresh_hash, expires_at, revoked_at)
             values (gen_random_uuid(), gen_random_uuid(), '\\x00', {expires}, {ended})"
        ))
        .execute(&pool)
        .await
        .unwrap();
    }
    sqlx::query(
        "insert into purser.sign_in_throttle (key, failures, window_start, updated_at)
         values ('client:10.0.0.1', 3, now(), now() - interval '2 days'), ('client:10.0.0.2', 3, now(), now())",
    )
    .execute(&pool)
    .await
    .unwrap();
    assert_eq!(purser_command_api::sessions::prune(&pool).await.unwrap(), 3);
    let left: (i64, i64) = sqlx::query_as(
        "select (select count(*) from purser.sessions), (select count(*) from purser.sign_in_throttle)",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(left, (1, 1), "the live session and the fresh count stay");
}
