//! The gateway's VAPID identity (RFC 8292): a P-256 key pair made once and kept in the
//! store (the same on every node), and the `Authorization: vapid t=<JWT>, k=<key>` header
//! of each push: an ES256 JWT for the push service's origin, valid 12 hours, naming the
//! operator's contact. On ring, like the TLS stack.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};

use crate::store::{Store, StoreError};

/// Where the store keeps the key pair (PKCS#8, base64url).
const KEY: &str = "push_vapid_pkcs8";
/// How long a VAPID token is valid (RFC 8292 allows at most 24 hours).
const VALID_SECS: i64 = 12 * 3600;

/// The gateway's VAPID key pair; the private half stays in the store and this process.
pub(crate) struct Vapid {
    key: EcdsaKeyPair,
    rng: SystemRandom,
}

impl std::fmt::Debug for Vapid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vapid")
            .field("public", &self.public_key())
            .finish_non_exhaustive()
    }
}

impl Vapid {
    /// The stored key, made on first use.
    pub(crate) async fn load(store: &Store) -> Result<Self, StoreError> {
        let rng = SystemRandom::new();
        let fresh = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map_err(|_| StoreError::Invalid("cannot make a VAPID key".into()))?;
        let stored = store
            .meta_or_insert(KEY, &URL_SAFE_NO_PAD.encode(fresh.as_ref()))
            .await?;
        let damaged = || StoreError::Corrupt("the stored VAPID key is not a P-256 key".into());
        let pkcs8 = URL_SAFE_NO_PAD.decode(stored).map_err(|_| damaged())?;
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &pkcs8, &rng)
            .map_err(|_| damaged())?;
        Ok(Self { key, rng })
    }

    /// The public key (uncompressed point, base64url), as browsers take it
    /// (`applicationServerKey`) and push services see it (`k=`).
    pub(crate) fn public_key(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.key.public_key().as_ref())
    }

    /// The `Authorization` header of a push to `audience` (the endpoint's origin, port
    /// included), signed now (`now` in Unix seconds) for `contact`.
    pub(crate) fn authorization(
        &self,
        audience: &str,
        contact: &str,
        now: i64,
    ) -> Result<String, String> {
        let header = URL_SAFE_NO_PAD.encode(br#"{"typ":"JWT","alg":"ES256"}"#);
        let claims = serde_json::json!({"aud": audience, "exp": now + VALID_SECS, "sub": contact});
        let input = format!("{header}.{}", URL_SAFE_NO_PAD.encode(claims.to_string()));
        let sig = self
            .key
            .sign(&self.rng, input.as_bytes())
            .map_err(|_| "cannot sign the VAPID token".to_owned())?;
        Ok(format!(
            "vapid t={input}.{}, k={}",
            URL_SAFE_NO_PAD.encode(sig.as_ref()),
            self.public_key()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::signature::{ECDSA_P256_SHA256_FIXED, UnparsedPublicKey};

    #[test]
    fn the_token_is_an_es256_jwt_for_the_audience_signed_by_k() {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .unwrap();
        let v = Vapid { key, rng };
        let h = v
            .authorization("https://push.example:8443", "mailto:ops@example.com", 1_000)
            .unwrap();
        let (t, k) = h
            .strip_prefix("vapid t=")
            .and_then(|r| r.split_once(", k="))
            .unwrap();
        assert_eq!(k, v.public_key());
        let parts: Vec<&str> = t.split('.').collect();
        let claims: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        assert_eq!(claims["aud"], "https://push.example:8443");
        assert_eq!(claims["exp"], 1_000 + VALID_SECS);
        assert_eq!(claims["sub"], "mailto:ops@example.com");
        let public = URL_SAFE_NO_PAD.decode(k).unwrap();
        let signed = format!("{}.{}", parts[0], parts[1]);
        let sig = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &public)
            .verify(signed.as_bytes(), &sig)
            .expect("k verifies the signature");
    }
}
