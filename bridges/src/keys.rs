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

    /// Loads the key from `path`, creating it the first time. `what` names it in errors.
    pub fn load_or_create(path: &Path, what: &str) -> Result<Self, String> {
        let fail = |e: std::io::Error| format!("{what} {}: {e}", path.display());
        if let Ok(hex_key) = std::fs::read_to_string(path) {
            let key = hex::decode(hex_key.trim()).map_err(|e| {
                format!(
                    "{what} {} is damaged ({e}); delete it to make a new one (what it signed stops working)",
                    path.display()
                )
            })?;
            return Ok(Self(key));
        }
        use rand::RngCore;
        let mut key = vec![0u8; 32];
        rand::rng().fill_bytes(&mut key);
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(fail)?;
        }
        create_private(path, &hex::encode(&key)).map_err(fail)?;
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

    /// Whether `sig` is [`MacKey::sign`]'s for `parts` (constant time).
    pub fn verify(&self, parts: &[&str], sig: &str) -> bool {
        let want = self.sign(parts, sig.len().max(1));
        sig.len() >= 16 && bool::from(want.as_bytes().ct_eq(sig.as_bytes()))
    }

    #[cfg(test)]
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.0
    }
}

/// Creates `path` with mode 0600 (never overwriting: two bridges racing keep one key).
fn create_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_bind_every_part_and_need_the_key() {
        let k = MacKey::new(vec![1; 32]);
        let s = k.sign(&["12", "run"], 16);
        assert_eq!(s.len(), 16);
        assert!(k.verify(&["12", "run"], &s));
        assert!(!k.verify(&["1", "2run"], &s));
        assert!(!MacKey::new(vec![2; 32]).verify(&["12", "run"], &s));
        assert!(
            !k.verify(&["12", "run"], &s[..8]),
            "short signatures are refused"
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
    }
}
