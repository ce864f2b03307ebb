//! Account emails: the link that proves a new account's address, and the password-reset
//! link. Each link carries a signed token made from the event's ids with the server's secret
//! when the email is written, so no link or code is ever stored.

use purser_api_core::auth::{LinkPurpose, Tokens};
use purser_domain::NotificationId;
use purser_domain::notification::{AccountLink, NotificationKind};

use super::templates::{Block, RenderedEmail, TemplateError, to_html, to_text};

pub struct AccountMail<'a> {
    pub notification_id: NotificationId,
    pub kind: NotificationKind,
    pub link: AccountLink,
    pub name: Option<&'a str>,
    /// Where the shop's pages live (`PURSER_DOWNLOAD_BASE_URL`), without a trailing slash.
    pub base_url: &'a str,
}

pub fn render(mail: &AccountMail<'_>, tokens: &Tokens) -> Result<RenderedEmail, TemplateError> {
    let (purpose, path) = match mail.kind {
        NotificationKind::VerifyEmail => (LinkPurpose::VerifyEmail, "account/verify-email"),
        NotificationKind::PasswordReset => (LinkPurpose::PasswordReset, "account/reset-password"),
        other => {
            return Err(TemplateError {
                kind: other.as_str(),
                missing: "an order (this is not an account email)".into(),
            });
        }
    };
    let link = mail.link;
    let token = tokens.issue_link(purpose, link.customer_id, link.link_id, link.expires_at);
    let url = format!(
        "{}/{path}?token={token}",
        mail.base_url.trim_end_matches('/')
    );
    let hello = match mail.name {
        Some(name) if !name.trim().is_empty() => format!("Hello {},", name.trim()),
        _ => "Hello,".to_owned(),
    };
    let until = link.expires_at.format("%-d %B %Y, %H:%M UTC").to_string();
    let (subject, intro, action) = match purpose {
        LinkPurpose::VerifyEmail => (
            "Confirm your email address",
            "Please confirm that this address is yours, so your account can see the orders \
             placed with it.",
            "Confirm the address",
        ),
        LinkPurpose::PasswordReset => (
            "Reset your password",
            "Someone asked to reset the password of the account with this address. If it was \
             you, choose a new password with the link below; it works once. If it was not, \
             ignore this email: your password stays as it is.",
            "Choose a new password",
        ),
    };
    let blocks = vec![
        Block::Paragraph(hello),
        Block::Paragraph(intro.into()),
        Block::Link(action, url),
        Block::Field("Valid until", until),
        Block::Code("Or paste this code into the app", token),
    ];
    Ok(RenderedEmail {
        subject: subject.to_owned(),
        text: to_text(&blocks, mail.notification_id),
        html: to_html(&blocks, mail.notification_id),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};
    use purser_domain::CustomerId;

    #[test]
    fn the_link_verifies_for_its_purpose_only() {
        let tokens = Tokens::new(
            b"0123456789abcdef0123456789abcdef",
            std::time::Duration::from_secs(60),
        );
        let link = AccountLink {
            customer_id: CustomerId::new(),
            link_id: uuid::Uuid::new_v4(),
            expires_at: Utc::now() + chrono::Duration::hours(1),
        };
        let mail = AccountMail {
            notification_id: NotificationId::new(),
            kind: NotificationKind::VerifyEmail,
            link,
            name: Some("Ann"),
            base_url: "https://shop.example/",
        };
        let email = render(&mail, &tokens).unwrap();
        assert_eq!(email.subject, "Confirm your email address");
        let token = email
            .text
            .split("verify-email?token=")
            .nth(1)
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap();
        assert_eq!(
            tokens.verify_link(LinkPurpose::VerifyEmail, token),
            Ok((link.customer_id, link.link_id))
        );
        assert!(
            tokens
                .verify_link(LinkPurpose::PasswordReset, token)
                .is_err()
        );
        assert!(
            email
                .html
                .contains("https://shop.example/account/verify-email?token=")
        );
        let _ = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0);
    }
}
