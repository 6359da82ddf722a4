//! A bridge's own secret key: 32 random bytes in a file beside its state file (mode 0600),
//! made on first start. It signs what the bridge hands out and must recognise when it comes
//! back: email reply tokens, Telegram button data, the mail thread of a run started by mail.
//! Pure apart from loading the key file.

use std::path::Path;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// An HMAC-SHA256 key.
#[derive(Clone)]
pub struct MacKey(Vec<u8>);

impl MacKey {
    pub fn new(key: Vec<u8>) -> Self {
        Self(key)
    }

    /// Loads the key from `path`, creating it the first time. `what` names it in errors. A
    /// key shorter than 16 bytes (an empty or truncated file) is refused: with it anyone
    /// could sign.
    pub fn load_or_create(path: &Path, what: &str) -> Result<Self, String> {
        let fail = |e: std::io::Error| format!("{what} {}: {e}", path.display());
        match std::fs::read_to_string(path) {
            Ok(text) => return Self::parse(&text, path, what),
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(fail(e)),
            Err(_) => {}
        }
        use rand::RngCore;
        let mut key = vec![0u8; 32];
        rand::rng().fill_bytes(&mut key);
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(fail)?;
        }
        match protocol::secret_file::create_private(path, &hex::encode(&key)) {
            Ok(()) => Ok(Self(key)),
            // Another process made it first: use that one.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let text = std::fs::read_to_string(path).map_err(fail)?;
                Self::parse(&text, path, what)
            }
            Err(e) => Err(fail(e)),
        }
    }

    fn parse(text: &str, path: &Path, what: &str) -> Result<Self, String> {
        let damaged = |why: String| {
            format!(
                "{what} {} is damaged ({why}); delete it to make a new one (what it signed stops working)",
                path.display()
            )
        };
        let key = hex::decode(text.trim()).map_err(|e| damaged(e.to_string()))?;
        if key.len() < 16 {
            return Err(damaged(format!("{} bytes, at least 16 needed", key.len())));
        }
        Ok(Self(key))
    }

    /// The first `len` hex digits of the HMAC of `parts` joined by newlines (so `["a",
    /// "bc"]` and `["ab", "c"]` differ).
    pub fn sign(&self, parts: &[&str], len: usize) -> String {
        // HMAC takes keys of any length; `new_from_slice` cannot fail for it.
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.0) else {
            unreachable!("HMAC takes keys of any length")
        };
        for (i, p) in parts.iter().enumerate() {
            if i > 0 {
                mac.update(b"\n");
            }
            mac.update(p.as_bytes());
        }
        let mut full = hex::encode(mac.finalize().into_bytes());
        full.truncate(len);
        full
    }

    /// Whether `sig` is [`MacKey::sign`]'s `len` digits for `parts` (constant time).
    pub fn verify(&self, parts: &[&str], sig: &str, len: usize) -> bool {
        let want = self.sign(parts, len);
        sig.len() == len && bool::from(want.as_bytes().ct_eq(sig.as_bytes()))
    }

    #[cfg(test)]
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_bind_every_part_and_need_the_key() {
        let k = MacKey::new(vec![1; 32]);
        let s = k.sign(&["12", "run"], 16);
        assert_eq!(s.len(), 16);
        assert!(k.verify(&["12", "run"], &s, 16));
        assert!(!k.verify(&["1", "2run"], &s, 16));
        assert!(!MacKey::new(vec![2; 32]).verify(&["12", "run"], &s, 16));
        assert!(
            !k.verify(&["12", "run"], &s[..8], 16),
            "short signatures are refused"
        );
        let long = k.sign(&["12", "run"], 32);
        assert!(
            !k.verify(&["12", "run"], &long[..16], 32),
            "a prefix is not enough"
        );
    }

    #[test]
    fn the_key_file_is_created_once_and_private() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("x.key");
        let a = MacKey::load_or_create(&path, "key").unwrap_or_else(|e| panic!("{e}"));
        let b = MacKey::load_or_create(&path, "key").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(a.bytes(), b.bytes());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).map(|m| m.permissions().mode() & 0o777);
            assert_eq!(mode.ok(), Some(0o600));
        }
        std::fs::write(&path, "zz").unwrap_or_else(|e| panic!("{e}"));
        assert!(MacKey::load_or_create(&path, "key").is_err());
        std::fs::write(&path, "").unwrap_or_else(|e| panic!("{e}"));
        let empty = MacKey::load_or_create(&path, "key")
            .err()
            .unwrap_or_default();
        assert!(empty.contains("at least 16"), "{empty}");
    }
}
