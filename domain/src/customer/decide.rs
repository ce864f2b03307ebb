//! The customer's decisions and how its events fold into state.

use super::{
    CustomerCommand as C, CustomerError, CustomerEvent, CustomerEvent::*, CustomerState,
    PasswordChange, PendingReset, Role,
};
use crate::{CustomerId, bounded_text};

pub(super) fn decide(
    state: &CustomerState,
    command: C,
) -> Result<Vec<CustomerEvent>, CustomerError> {
    let id = state.customer_id;
    match command {
        C::Register { email, name, verification_id, now } => {
            if state.registered {
                return Err(CustomerError::EmailTaken);
            }
            let name = bounded_text("name", &name, 200, true)?;
            let customer_id = CustomerId::for_email(&email);
            Ok(vec![
                CustomerRegistered {
                    customer_id,
                    email: email.clone(),
                    name,
                    password_hash: None,
                    at: now,
                },
                EmailVerificationRequested { customer_id, verification_id, email, at: now },
            ])
        }
        C::ProvisionAccount { customer_id, email, order_id, now } => {
            if state.provisioned_for_orders.contains(&order_id) {
                return Ok(vec![]);
            }
            let guest = customer_id == CustomerId::guest_of(order_id);
            Ok(vec![AccountProvisioned { customer_id, email, order_id, guest, at: now }])
        }
        C::GrantRole { role, now } => {
            if !state.exists() {
                return Err(CustomerError::NotFound);
            }
            if state.roles.contains(&role) {
                return Ok(vec![]);
            }
            // A staff role needs an account someone signed up for or an operator created;
            // a checkout's guest identity never gets one.
            if !state.registered {
                return Err(CustomerError::NotRegistered);
            }
            Ok(vec![RoleGranted { customer_id: id, role, at: now }])
        }
        C::RevokeRole { role, now } => {
            if !state.exists() {
                return Err(CustomerError::NotFound);
            }
            if role == Role::Customer {
                return Err(CustomerError::RoleNotRevocable);
            }
            if !state.roles.contains(&role) {
                return Ok(vec![]);
            }
            Ok(vec![RoleRevoked { customer_id: id, role, at: now }])
        }
        C::RedeemSignInToken { token_id, order_id, expires_at, now } => {
            if !state.exists() {
                return Err(CustomerError::NotFound);
            }
            if state.registered
                || state.is_staff()
                || state.disabled
                || state.created_by_order != Some(order_id)
            {
                return Err(CustomerError::SignInNotAllowed);
            }
            if state.redeemed_sign_in_tokens.contains(&token_id) {
                return Err(CustomerError::TokenAlreadyUsed);
            }
            if now >= expires_at {
                return Err(CustomerError::TokenExpired);
            }
            Ok(vec![SignInTokenRedeemed { customer_id: id, token_id, at: now }])
        }
        C::RequestEmailVerification { verification_id, now } => {
            let email = registered_email(state)?;
            if state.verified {
                return Ok(vec![]);
            }
            Ok(vec![EmailVerificationRequested {
                customer_id: id,
                verification_id,
                email,
                at: now,
            }])
        }
        C::VerifyEmail { verification_id, now } => {
            registered_email(state)?;
            if state.verified {
                return Ok(vec![]);
            }
            if state.pending_verification != Some(verification_id) {
                return Err(CustomerError::TokenInvalid);
            }
            Ok(vec![EmailVerified { customer_id: id, verification_id, at: now }])
        }
        C::RequestPasswordReset { reset_id, expires_at, now } => {
            let email = registered_email(state)?;
            if state.disabled {
                return Err(CustomerError::Disabled);
            }
            Ok(vec![PasswordResetRequested {
                customer_id: id,
                reset_id,
                email,
                expires_at,
                at: now,
            }])
        }
        C::ResetPassword { reset_id, now } => {
            registered_email(state)?;
            match state.pending_reset {
                Some(p) if p.reset_id == reset_id && now < p.expires_at => {}
                Some(p) if p.reset_id == reset_id => return Err(CustomerError::TokenExpired),
                _ => return Err(CustomerError::TokenInvalid),
            }
            if state.disabled {
                return Err(CustomerError::Disabled);
            }
            Ok(vec![PasswordChanged { customer_id: id, how: PasswordChange::Reset, at: now }])
        }
        C::ChangePassword { now } => {
            registered_email(state)?;
            Ok(vec![PasswordChanged { customer_id: id, how: PasswordChange::Changed, at: now }])
        }
        C::Disable { reason, now } => {
            if !state.exists() {
                return Err(CustomerError::NotFound);
            }
            if state.disabled {
                return Ok(vec![]);
            }
            let reason = bounded_text("reason", &reason, 500, false)?;
            Ok(vec![AccountDisabled { customer_id: id, reason, at: now }])
        }
        C::Enable { now } => {
            if !state.exists() {
                return Err(CustomerError::NotFound);
            }
            if !state.disabled {
                return Ok(vec![]);
            }
            Ok(vec![AccountEnabled { customer_id: id, at: now }])
        }
    }
}

fn registered_email(state: &CustomerState) -> Result<crate::Email, CustomerError> {
    match (&state.email, state.registered) {
        (Some(email), true) => Ok(email.clone()),
        _ => Err(CustomerError::NotFound),
    }
}

pub(super) fn evolve(mut state: CustomerState, event: &CustomerEvent) -> CustomerState {
    match event {
        CustomerRegistered { customer_id, email, name, password_hash, .. } => {
            state.customer_id = *customer_id;
            state.registered = true;
            state.email = Some(email.clone());
            state.name = Some(name.clone());
            state.password_hash = password_hash.clone();
            state.roles.insert(Role::Customer);
        }
        AccountProvisioned { customer_id, email, order_id, guest, .. } => {
            if !state.exists() && *guest {
                state.created_by_order = Some(*order_id);
            }
            state.customer_id = *customer_id;
            state.provisioned = true;
            state.email.get_or_insert_with(|| email.clone());
            state.provisioned_for_orders.insert(*order_id);
            state.roles.insert(Role::Customer);
        }
        RoleGranted { role, .. } => {
            state.roles.insert(*role);
        }
        RoleRevoked { role, .. } => {
            state.roles.remove(role);
        }
        SignInTokenRedeemed { token_id, .. } => {
            state.redeemed_sign_in_tokens.insert(*token_id);
        }
        EmailVerificationRequested { verification_id, .. } => {
            state.pending_verification = Some(*verification_id);
        }
        EmailVerified { .. } => {
            state.verified = true;
            state.pending_verification = None;
        }
        PasswordResetRequested { reset_id, expires_at, .. } => {
            state.pending_reset =
                Some(PendingReset { reset_id: *reset_id, expires_at: *expires_at });
        }
        PasswordChanged { how, .. } => {
            state.pending_reset = None;
            state.password_hash = None;
            // Following the emailed link proves the address as well.
            if *how == PasswordChange::Reset {
                state.verified = true;
                state.pending_verification = None;
            }
        }
        AccountDisabled { .. } => state.disabled = true,
        AccountEnabled { .. } => state.disabled = false,
    }
    state
}
