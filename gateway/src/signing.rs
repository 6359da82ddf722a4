//! HMAC-SHA256 signatures shared by inbound triggers and outbound webhooks.
//!
//! The signed text is `"{timestamp}.{body}"` and the header value `sha256=<hex>`, so a
//! receiver can check freshness (the timestamp) and integrity with one secret. Comparison
//! is constant-time. This module knows bytes and secrets, not HTTP.

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

fn mac(secret: &str, timestamp: &str, body: &[u8]) -> HmacSha256 {
    // HMAC accepts keys of any length; `new_from_slice` cannot fail for it.
    let mut m = match HmacSha256::new_from_slice(secret.as_bytes()) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC takes keys of any length"),
    };
    m.update(timestamp.as_bytes());
    m.update(b".");
    m.update(body);
    m
}

/// The `X-Switchboard-Signature` value for a body sent at `timestamp` (Unix seconds).
pub(crate) fn sign(secret: &str, timestamp: &str, body: &[u8]) -> String {
    format!(
        "sha256={}",
        hex::encode(mac(secret, timestamp, body).finalize().into_bytes())
    )
}

/// Checks a `sha256=<hex>` header value in constant time.
pub(crate) fn verify(secret: &str, timestamp: &str, body: &[u8], header: &str) -> bool {
    let Some(hex_sig) = header.trim().strip_prefix("sha256=") else {
        return false;
    };
    let Ok(sig) = hex::decode(hex_sig) else {
        return false;
    };
    mac(secret, timestamp, body).verify_slice(&sig).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_verifies_only_with_its_secret_timestamp_and_body() {
        let s = sign("k", "1700000000", b"{\"a\":1}");
        assert!(s.starts_with("sha256=") && s.len() == 7 + 64);
        assert!(verify("k", "1700000000", b"{\"a\":1}", &s));
        assert!(!verify("other", "1700000000", b"{\"a\":1}", &s));
        assert!(!verify("k", "1700000001", b"{\"a\":1}", &s));
        assert!(!verify("k", "1700000000", b"{\"a\":2}", &s));
        assert!(!verify("k", "1700000000", b"{\"a\":1}", "sha256=zz"));
        assert!(!verify("k", "1700000000", b"{\"a\":1}", &s[7..]));
    }

    #[test]
    fn matches_a_known_vector() {
        // python3 -c 'import hmac,hashlib;print(hmac.new(b"secret",b"1.body",hashlib.sha256).hexdigest())'
        assert_eq!(
            sign("secret", "1", b"body"),
            "sha256=842b24d9575dee4b6ec460b7e3af7d683501d84fe6279102340787c79d2e2bab"
        );
    }
}
