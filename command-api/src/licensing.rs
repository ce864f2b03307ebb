//! Signed license keys: Ed25519 over the license payload, verifiable offline with the public
//! key alone.
//!
//! A key reads `PSR1.<payload>.<signature>`, both parts base64url without padding: the payload
//! is `LicensePayload::signing_bytes()` (canonical JSON: license id, SKU, customer, seats,
//! expiry), the signature is Ed25519 over exactly those bytes. `purser license verify KEY`
//! checks one with the public key.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use purser_domain::license::LicensePayload;

const PREFIX: &str = "PSR1";

/// Signs license payloads. Its `Debug` never shows the key.
#[derive(Clone)]
pub struct LicenseSigner {
    key: SigningKey,
}

impl std::fmt::Debug for LicenseSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LicenseSigner(public {})", self.public_key_base64())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LicenseKeyError {
    #[error("the signing key must be 32 bytes, base64-encoded")]
    BadSigningKey,
    #[error("the public key must be 32 bytes, base64-encoded")]
    BadPublicKey,
    #[error("this is not a Purser license key (expected PSR1.<payload>.<signature>)")]
    Malformed,
    #[error("the signature does not match: the key was altered or signed by someone else")]
    BadSignature,
}

impl LicenseSigner {
    /// From the base64 of a 32-byte Ed25519 seed (`PURSER_LICENSE_SIGNING_KEY`).
    pub fn from_base64(seed: &str) -> Result<LicenseSigner, LicenseKeyError> {
        let bytes = STANDARD
            .decode(seed.trim())
            .map_err(|_| LicenseKeyError::BadSigningKey)?;
        let seed: [u8; 32] = bytes
            .try_into()
            .map_err(|_| LicenseKeyError::BadSigningKey)?;
        Ok(LicenseSigner {
            key: SigningKey::from_bytes(&seed),
        })
    }

    /// A fresh key pair; returns the signer and its seed in base64 (to store as a secret).
    pub fn generate() -> (LicenseSigner, String) {
        let seed: [u8; 32] = rand::random();
        (
            LicenseSigner {
                key: SigningKey::from_bytes(&seed),
            },
            STANDARD.encode(seed),
        )
    }

    /// The public key, base64: what `purser license verify` needs.
    pub fn public_key_base64(&self) -> String {
        STANDARD.encode(self.key.verifying_key().to_bytes())
    }

    pub fn sign(&self, payload: &LicensePayload) -> String {
        let bytes = payload.signing_bytes();
        let signature = self.key.sign(&bytes);
        format!(
            "{PREFIX}.{}.{}",
            URL_SAFE_NO_PAD.encode(&bytes),
            URL_SAFE_NO_PAD.encode(signature.to_bytes())
        )
    }
}

/// Checks a license key against a public key; returns the signed payload as JSON.
pub fn verify(
    license_key: &str,
    public_key_base64: &str,
) -> Result<serde_json::Value, LicenseKeyError> {
    let public = STANDARD
        .decode(public_key_base64.trim())
        .map_err(|_| LicenseKeyError::BadPublicKey)?;
    let public: [u8; 32] = public
        .try_into()
        .map_err(|_| LicenseKeyError::BadPublicKey)?;
    let public = VerifyingKey::from_bytes(&public).map_err(|_| LicenseKeyError::BadPublicKey)?;
    let mut parts = license_key.trim().split('.');
    let (Some(PREFIX), Some(payload), Some(sig), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(LicenseKeyError::Malformed);
    };
    let payload = URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|_| LicenseKeyError::Malformed)?;
    let sig = URL_SAFE_NO_PAD
        .decode(sig)
        .map_err(|_| LicenseKeyError::Malformed)?;
    let sig: [u8; 64] = sig.try_into().map_err(|_| LicenseKeyError::Malformed)?;
    public
        .verify(&payload, &Signature::from_bytes(&sig))
        .map_err(|_| LicenseKeyError::BadSignature)?;
    serde_json::from_slice(&payload).map_err(|_| LicenseKeyError::Malformed)
}

#[cfg(test)]
mod tests {
    use purser_domain::{CustomerId, LicenseId, Sku};

    use super::*;

    fn payload() -> LicensePayload {
        LicensePayload {
            license_id: LicenseId::new(),
            sku: Sku::parse("AV-1Y").unwrap(),
            customer_id: CustomerId::new(),
            seats: 3,
            expires_at: None,
        }
    }

    #[test]
    fn signed_keys_verify_offline_and_tampering_is_caught() {
        let (signer, seed) = LicenseSigner::generate();
        let again = LicenseSigner::from_base64(&seed).unwrap();
        assert_eq!(again.public_key_base64(), signer.public_key_base64());
        let key = signer.sign(&payload());
        let claims = verify(&key, &signer.public_key_base64()).unwrap();
        assert_eq!(claims["seats"], 3);
        let (other, _) = LicenseSigner::generate();
        assert_eq!(
            verify(&key, &other.public_key_base64()),
            Err(LicenseKeyError::BadSignature)
        );
        let mut parts: Vec<String> = key.split('.').map(str::to_owned).collect();
        let mut forged = payload();
        forged.seats = 500;
        parts[1] = URL_SAFE_NO_PAD.encode(forged.signing_bytes());
        assert_eq!(
            verify(&parts.join("."), &signer.public_key_base64()),
            Err(LicenseKeyError::BadSignature)
        );
        assert_eq!(
            verify("nonsense", &signer.public_key_base64()),
            Err(LicenseKeyError::Malformed)
        );
        assert!(LicenseSigner::from_base64("short").is_err());
        assert!(!format!("{signer:?}").contains(&seed));
    }
}
