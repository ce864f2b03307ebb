use super::CustomerEvent::*;
use super::*;
use crate::aggregate::testing::given;
use crate::test_support::{email, t};

fn ann() -> Email {
    email("ann@example.com")
}

fn id() -> CustomerId {
    CustomerId::for_email(&ann())
}

fn order(n: &str) -> OrderId {
    OrderId::derived(&["test-order", n])
}

fn vid() -> uuid::Uuid {
    uuid::Uuid::from_u128(1)
}

fn register() -> CustomerCommand {
    CustomerCommand::Register {
        email: ann(),
        name: " Ann ".into(),
        verification_id: vid(),
        now: t(0),
    }
}

fn registered() -> CustomerEvent {
    CustomerRegistered {
        customer_id: id(),
        email: ann(),
        name: "Ann".into(),
        password_hash: None,
        at: t(0),
    }
}

fn verification_requested() -> CustomerEvent {
    EmailVerificationRequested { customer_id: id(), verification_id: vid(), email: ann(), at: t(0) }
}

fn guest(n: &str) -> CustomerEvent {
    AccountProvisioned {
        customer_id: CustomerId::guest_of(order(n)),
        email: ann(),
        order_id: order(n),
        guest: true,
        at: t(1),
    }
}

#[test]
fn registering_asks_for_the_address_to_be_verified_and_keeps_no_hash() {
    given::<Customer>([]).when(register()).then([registered(), verification_requested()]);
    let err = given::<Customer>([registered()]).when(register()).result().unwrap_err();
    assert_eq!((err.code(), err.field()), ("EMAIL_TAKEN", Some("email")));
    let state = given::<Customer>([registered(), verification_requested()]).state().clone();
    assert!(state.registered && !state.verified && state.password_hash.is_none());
    assert_eq!(state.pending_verification, Some(vid()));
}

#[test]
fn a_guest_checkout_gets_its_own_identity_never_the_account() {
    let provision = CustomerCommand::ProvisionAccount {
        customer_id: CustomerId::guest_of(order("1")),
        email: ann(),
        order_id: order("1"),
        now: t(1),
    };
    given::<Customer>([]).when(provision.clone()).then([guest("1")]);
    given::<Customer>([guest("1")]).when(provision).then([]);
    assert_ne!(CustomerId::guest_of(order("1")), id());
    let state = given::<Customer>([guest("1")]).state().clone();
    assert_eq!(state.created_by_order, Some(order("1")));
    // The account's own digital purchase attaches to the account, as no guest.
    let own = CustomerCommand::ProvisionAccount {
        customer_id: id(),
        email: ann(),
        order_id: order("2"),
        now: t(2),
    };
    let events = given::<Customer>([registered()]).when(own).result().unwrap();
    assert!(matches!(events.as_slice(), [AccountProvisioned { guest: false, .. }]));
}

#[test]
fn the_post_purchase_token_signs_in_only_to_its_own_guest_identity_once() {
    let token_id = uuid::Uuid::from_u128(7);
    let redeem = |o: &str, now| CustomerCommand::RedeemSignInToken {
        token_id,
        order_id: order(o),
        expires_at: t(10),
        now,
    };
    given::<Customer>([]).when(redeem("1", t(1))).then_error("CUSTOMER_NOT_FOUND");
    given::<Customer>([guest("1")]).when(redeem("1", t(11))).then_error("TOKEN_EXPIRED");
    given::<Customer>([guest("1")]).when(redeem("2", t(1))).then_error("INVALID_TOKEN");
    let redeemed =
        SignInTokenRedeemed { customer_id: CustomerId::guest_of(order("1")), token_id, at: t(1) };
    given::<Customer>([guest("1")]).when(redeem("1", t(1))).then([redeemed.clone()]);
    given::<Customer>([guest("1"), redeemed])
        .when(redeem("1", t(2)))
        .then_error("TOKEN_ALREADY_USED");
    // Never a registered account, never a staff member.
    given::<Customer>([registered()]).when(redeem("1", t(1))).then_error("INVALID_TOKEN");
}

#[test]
fn staff_roles_go_only_to_registered_accounts() {
    let grant = |role| CustomerCommand::GrantRole { role, now: t(2) };
    let revoke = |role| CustomerCommand::RevokeRole { role, now: t(3) };
    let granted = RoleGranted { customer_id: id(), role: Role::Admin, at: t(2) };
    given::<Customer>([registered()]).when(grant(Role::Admin)).then([granted.clone()]);
    given::<Customer>([registered(), granted.clone()]).when(grant(Role::Admin)).then([]);
    given::<Customer>([guest("1")]).when(grant(Role::Admin)).then_error("CUSTOMER_NOT_REGISTERED");
    given::<Customer>([]).when(grant(Role::Admin)).then_error("CUSTOMER_NOT_FOUND");
    given::<Customer>([registered(), granted]).when(revoke(Role::Admin)).then([RoleRevoked {
        customer_id: id(),
        role: Role::Admin,
        at: t(3),
    }]);
    given::<Customer>([registered()]).when(revoke(Role::Customer)).then_error("ROLE_NOT_REVOCABLE");
}

#[test]
fn the_address_is_verified_with_the_latest_link_only() {
    let verify = |v| CustomerCommand::VerifyEmail { verification_id: v, now: t(5) };
    let history = [registered(), verification_requested()];
    given::<Customer>(history.clone())
        .when(verify(uuid::Uuid::from_u128(9)))
        .then_error("INVALID_TOKEN");
    let verified = EmailVerified { customer_id: id(), verification_id: vid(), at: t(5) };
    given::<Customer>(history.clone()).when(verify(vid())).then([verified.clone()]);
    given::<Customer>([registered(), verification_requested(), verified])
        .when(verify(vid()))
        .then([]);
    given::<Customer>([guest("1")]).when(verify(vid())).then_error("CUSTOMER_NOT_FOUND");
}

#[test]
fn a_reset_link_works_once_before_it_expires() {
    let reset_id = uuid::Uuid::from_u128(3);
    let requested = PasswordResetRequested {
        customer_id: id(),
        reset_id,
        email: ann(),
        expires_at: t(10),
        at: t(1),
    };
    let reset = |r, now| CustomerCommand::ResetPassword { reset_id: r, now };
    given::<Customer>([registered()]).when(reset(reset_id, t(2))).then_error("INVALID_TOKEN");
    given::<Customer>([registered(), requested.clone()])
        .when(reset(reset_id, t(11)))
        .then_error("TOKEN_EXPIRED");
    let changed = PasswordChanged { customer_id: id(), how: PasswordChange::Reset, at: t(2) };
    given::<Customer>([registered(), requested.clone()])
        .when(reset(reset_id, t(2)))
        .then([changed.clone()]);
    given::<Customer>([registered(), requested, changed.clone()])
        .when(reset(reset_id, t(3)))
        .then_error("INVALID_TOKEN");
    let request = CustomerCommand::RequestPasswordReset { reset_id, expires_at: t(10), now: t(1) };
    given::<Customer>([guest("1")]).when(request).then_error("CUSTOMER_NOT_FOUND");
    let state = given::<Customer>([registered(), changed]).state().clone();
    assert!(state.verified, "following the emailed link proves the address");
}

#[test]
fn a_disabled_account_cannot_redeem_or_reset() {
    let disabled = AccountDisabled { customer_id: id(), reason: "fraud".into(), at: t(1) };
    let disable = CustomerCommand::Disable { reason: "fraud".into(), now: t(1) };
    given::<Customer>([registered()]).when(disable.clone()).then([disabled.clone()]);
    given::<Customer>([registered(), disabled.clone()]).when(disable).then([]);
    let request =
        CustomerCommand::RequestPasswordReset { reset_id: vid(), expires_at: t(9), now: t(2) };
    given::<Customer>([registered(), disabled.clone()])
        .when(request)
        .then_error("ACCOUNT_DISABLED");
    given::<Customer>([registered(), disabled])
        .when(CustomerCommand::Enable { now: t(3) })
        .then([AccountEnabled { customer_id: id(), at: t(3) }]);
}

#[test]
fn accounts_registered_before_credentials_left_the_log_still_load() {
    let v1 = serde_json::json!({
        "customer_id": id(), "email": "ann@example.com", "name": "Ann",
        "password_hash": "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA", "at": t(0),
    });
    let e = CustomerEvent::decode("CustomerRegistered", 1, v1).unwrap();
    let state = Customer::evolve(CustomerState::default(), &e);
    assert!(state.registered && state.password_hash.is_some());
    let (_, version, data) = registered().encode();
    assert_eq!(version, 2);
    assert!(data.get("password_hash").is_none(), "new events carry no hash");
}

#[test]
fn password_hashes_are_redacted_and_validated() {
    let hash = PasswordHash::from_phc("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA").unwrap();
    assert_eq!(format!("{hash:?}"), "PasswordHash(<redacted>)");
    assert!(PasswordHash::from_phc("hunter2").is_err());
    assert!(PasswordHash::from_phc("$argon2id$ with space").is_err());
    assert_eq!(serde_json::to_value(Role::Analyst).unwrap(), "analyst");
}
