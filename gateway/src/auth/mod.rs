//! Who may do what: credentials and their scopes.
//!
//! Owns the in-memory view of every live credential (admin token, paired devices, scoped
//! API keys), keyed by the SHA-256 of the secret, plus minting and checking secrets and
//! pairing codes. Plain secrets exist only in memory while being handed out (and in the
//! admin token's own 0600 file); the store keeps hashes. `limits` holds the request limits
//! (origins, rate, lockout). HTTP concerns (headers, status codes) live in `http::auth`.

pub(crate) mod approvers;
pub(crate) mod limits;
pub(crate) mod reach;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::store::{Store, StoreError, TokenRow};

/// What a credential may do. `Admin` implies every other scope. `Channel` is a channel
/// bridge's: it acts for that channel's people (runs in their sessions, prompts to them)
/// and publishes who the channel may reach ([`reach`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Scope {
    Read,
    Run,
    Command,
    Channel,
    Admin,
}

impl Scope {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Run => "run",
            Self::Command => "command",
            Self::Channel => "channel",
            Self::Admin => "admin",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Self> {
        match s {
            "read" => Some(Self::Read),
            "run" => Some(Self::Run),
            "command" => Some(Self::Command),
            "channel" => Some(Self::Channel),
            "admin" => Some(Self::Admin),
            _ => None,
        }
    }
}

/// Scopes of a paired device: a person's client.
pub(crate) const DEVICE_SCOPES: &[Scope] = &[Scope::Read, Scope::Run, Scope::Command];

/// Scopes of a hosted channel bridge's own key.
pub(crate) const BRIDGE_SCOPES: &[Scope] =
    &[Scope::Read, Scope::Run, Scope::Command, Scope::Channel];

/// Who sent a request (recorded as the `actor` of the records it causes).
#[derive(Debug, Clone)]
pub(crate) struct Principal {
    pub(crate) id: String,
    pub(crate) kind: String,
    pub(crate) name: String,
    pub(crate) scopes: Vec<Scope>,
}

impl Principal {
    pub(crate) fn allows(&self, s: Scope) -> bool {
        self.scopes.iter().any(|x| *x == s || *x == Scope::Admin)
    }

    /// The scopes' names, for `whoami`.
    pub(crate) fn scope_names(&self) -> Vec<String> {
        self.scopes.iter().map(|s| s.as_str().to_owned()).collect()
    }

    /// `admin`, `device:<name>` or `key:<name>`.
    pub(crate) fn label(&self) -> String {
        match self.kind.as_str() {
            "admin" => "admin".into(),
            k => format!("{k}:{}", self.name),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum AuthError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Conflict(String),
}

pub(crate) fn hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// A new random secret with a readable prefix (`sb_`, `sbd_`, `sbk_`).
pub(crate) fn new_secret(prefix: &str) -> String {
    let bytes: [u8; 32] = rand::random();
    format!("{prefix}{}", hex::encode(bytes))
}

const CODE_ALPHABET: &[u8] = b"ABCDEFGHJKMNPQRSTUVWXYZ23456789";

/// A pairing code such as `K7QM-3XPA` (no 0/O or 1/I/L to misread).
pub(crate) fn new_pairing_code() -> String {
    let mut s = String::with_capacity(9);
    for i in 0..8 {
        if i == 4 {
            s.push('-');
        }
        let n: usize = rand::random_range(0..CODE_ALPHABET.len());
        s.push(CODE_ALPHABET[n] as char);
    }
    s
}

/// The form a pairing code is hashed in: upper case, no dashes or spaces.
pub(crate) fn normalize_code(code: &str) -> String {
    code.chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

/// Live credentials, by hash.
pub(crate) struct Auth {
    store: Store,
    by_hash: RwLock<HashMap<String, Principal>>,
    touched: std::sync::Mutex<HashMap<String, Instant>>,
    /// Where a generated admin token lives; `None` when it comes from the configuration.
    token_file: Option<PathBuf>,
    pub(crate) pairing_ttl: Duration,
}

impl Auth {
    /// Stores the admin token's hash and loads every live credential.
    pub(crate) async fn load(
        store: Store,
        admin_token: &str,
        token_file: Option<PathBuf>,
        pairing_ttl: Duration,
    ) -> Result<Self, AuthError> {
        store.set_admin_hash(&hash(admin_token)).await?;
        let auth = Self {
            store,
            by_hash: RwLock::new(HashMap::new()),
            touched: std::sync::Mutex::new(HashMap::new()),
            token_file,
            pairing_ttl,
        };
        auth.reload().await?;
        Ok(auth)
    }

    /// Reads every live credential from the store again (a change another node made).
    pub(crate) async fn reload(&self) -> Result<(), AuthError> {
        let rows = self.store.tokens().await?;
        let map = rows
            .into_iter()
            .filter(|t| t.revoked_at.is_none())
            .map(|t| {
                let p = Principal {
                    id: t.id,
                    kind: t.kind,
                    name: t.name,
                    scopes: t.scopes.iter().filter_map(|s| Scope::parse(s)).collect(),
                };
                (t.hash, p)
            })
            .collect();
        *self.by_hash.write().unwrap_or_else(|p| p.into_inner()) = map;
        Ok(())
    }

    /// The principal a secret belongs to, if it is live.
    pub(crate) fn check(&self, secret: &str) -> Option<Principal> {
        let h = hash(secret);
        let map = self.by_hash.read().unwrap_or_else(|p| p.into_inner());
        let (stored, p) = map.get_key_value(&h)?;
        bool::from(stored.as_bytes().ct_eq(h.as_bytes())).then(|| p.clone())
    }

    /// Notes that a credential was used (at most once a minute per credential).
    pub(crate) fn touch(&self, p: &Principal) {
        let mut t = self.touched.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        if t.get(&p.id)
            .is_some_and(|last| now.duration_since(*last) < Duration::from_secs(60))
        {
            return;
        }
        t.insert(p.id.clone(), now);
        let (store, id) = (self.store.clone(), p.id.clone());
        tokio::spawn(async move {
            if let Err(e) = store.touch_token(&id).await {
                tracing::warn!(error = %e, "cannot record a token's last use");
            }
        });
    }

    /// A new single-use pairing code and when it expires.
    pub(crate) async fn mint_code(
        &self,
    ) -> Result<(String, chrono::DateTime<chrono::Utc>), AuthError> {
        let code = new_pairing_code();
        let expires = chrono::Utc::now() + self.pairing_ttl;
        self.store
            .add_pairing_code(&hash(&normalize_code(&code)), expires)
            .await?;
        Ok((code, expires))
    }

    /// Trades a pairing code for a named device token.
    pub(crate) async fn pair(
        &self,
        code: &str,
        name: &str,
    ) -> Result<(TokenRow, String), AuthError> {
        let secret = new_secret("sbd_");
        let row = new_row("device", name, &secret, DEVICE_SCOPES);
        let row = self
            .store
            .redeem_pairing_code(&hash(&normalize_code(code)), row)
            .await
            .map_err(|e| match e {
                StoreError::Invalid(m) => AuthError::Invalid(m),
                other => AuthError::Store(other),
            })?;
        self.reload().await?;
        Ok((row, secret))
    }

    pub(crate) async fn create_key(
        &self,
        name: &str,
        scopes: &[Scope],
    ) -> Result<(TokenRow, String), AuthError> {
        let secret = new_secret("sbk_");
        let row = self
            .store
            .add_token(new_row("key", name, &secret, scopes))
            .await?;
        self.reload().await?;
        Ok((row, secret))
    }

    pub(crate) async fn revoke(&self, id: &str, kind: &str) -> Result<TokenRow, AuthError> {
        let row = self.store.revoke_token(id, kind).await?;
        self.reload().await?;
        Ok(row)
    }

    /// Replaces the admin token; the old one stops working at once.
    pub(crate) async fn rotate_admin(&self) -> Result<String, AuthError> {
        let Some(file) = &self.token_file else {
            return Err(AuthError::Conflict(
                "the admin token comes from SWITCHBOARD_AUTH_TOKEN (or the config file); change it there".into(),
            ));
        };
        let secret = new_secret("sb_");
        crate::app::write_private(file, &secret)
            .map_err(|e| AuthError::Invalid(format!("cannot write {}: {e}", file.display())))?;
        self.store.set_admin_hash(&hash(&secret)).await?;
        self.reload().await?;
        Ok(secret)
    }

    pub(crate) async fn list(&self, kind: &str) -> Result<Vec<TokenRow>, AuthError> {
        Ok(self
            .store
            .tokens()
            .await?
            .into_iter()
            .filter(|t| t.kind == kind)
            .collect())
    }
}

fn new_row(kind: &str, name: &str, secret: &str, scopes: &[Scope]) -> TokenRow {
    TokenRow {
        id: uuid::Uuid::new_v4().to_string(),
        kind: kind.into(),
        name: name.into(),
        hash: hash(secret),
        scopes: scopes.iter().map(|s| s.as_str().to_owned()).collect(),
        created_at: crate::engine::ts(chrono::Utc::now()),
        last_used_at: None,
        revoked_at: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairing_codes_are_readable_and_normalised() {
        let c = new_pairing_code();
        assert_eq!(c.len(), 9);
        assert_eq!(normalize_code(&c.to_lowercase()), normalize_code(&c));
        assert!(!c.contains(['0', 'O', '1', 'I', 'L']));
    }

    #[test]
    fn admin_implies_every_scope() {
        let p = Principal {
            id: "a".into(),
            kind: "admin".into(),
            name: "admin".into(),
            scopes: vec![Scope::Admin],
        };
        assert!(p.allows(Scope::Command));
        let k = Principal {
            id: "k".into(),
            kind: "key".into(),
            name: "ci".into(),
            scopes: vec![Scope::Read],
        };
        assert!(k.allows(Scope::Read) && !k.allows(Scope::Run));
        assert_eq!(k.label(), "key:ci");
    }
}
