//! Reply tokens: how a reply is tied to the prompt it answers, and proven to be a reply to
//! a mail the bridge sent. A prompt mail's Message-ID is `sb.<prompt>.<sig>@<domain>`, where
//! `sig` is an HMAC-SHA256 (key: a random file in the data dir, 0600) over the prompt id,
//! run id and wait key. A reply names it in In-Reply-To/References; the same token also
//! stands in the subject tag `[ref sb.<prompt>.<sig>]` and works as a plus-address
//! (`bot+sb.<prompt>.<sig>@domain`), the fallbacks for clients that drop the headers.
//! Pure apart from loading the key file.

use std::path::Path;

use subtle::ConstantTimeEq;

use super::EmailError;
use crate::keys::MacKey;

/// Hex digits of the HMAC kept in a token (64 bits).
const SIG_LEN: usize = 16;
const PREFIX: &str = "sb.";

/// A token found in a mail: the prompt it names and the signature it carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub prompt: i64,
    pub sig: String,
}

impl Token {
    pub fn render(&self) -> String {
        format!("{PREFIX}{}.{}", self.prompt, self.sig)
    }

    /// Parses `sb.<id>.<sig>` at the start of `s` (the rest is ignored).
    fn parse_prefix(s: &str) -> Option<Self> {
        let rest = s.strip_prefix(PREFIX)?;
        let (id, rest) = rest.split_once('.')?;
        let sig: String = rest.chars().take_while(char::is_ascii_hexdigit).collect();
        if sig.len() != SIG_LEN {
            return None;
        }
        Some(Self {
            prompt: id.parse().ok()?,
            sig: sig.to_ascii_lowercase(),
        })
    }
}

/// Signs and checks tokens with the bridge's key.
#[derive(Clone)]
pub struct Signer {
    key: MacKey,
}

impl Signer {
    pub fn new(key: Vec<u8>) -> Self {
        Self {
            key: MacKey::new(key),
        }
    }

    /// Loads the key from `path`, creating it (32 random bytes, mode 0600) the first time.
    pub fn load_or_create(path: &Path) -> Result<Self, EmailError> {
        let key = MacKey::load_or_create(path, "reply-token key").map_err(EmailError::Config)?;
        Ok(Self { key })
    }

    fn sig(&self, prompt: i64, run_id: &str, wait_key: &str) -> String {
        self.key
            .sign(&[&prompt.to_string(), run_id, wait_key], SIG_LEN)
    }

    /// The token of a prompt.
    pub fn token(&self, prompt: i64, run_id: &str, wait_key: &str) -> Token {
        Token {
            prompt,
            sig: self.sig(prompt, run_id, wait_key),
        }
    }

    /// Whether `t` was signed by this key for that prompt (constant-time).
    pub fn verify(&self, t: &Token, run_id: &str, wait_key: &str) -> bool {
        let want = self.sig(t.prompt, run_id, wait_key);
        bool::from(want.as_bytes().ct_eq(t.sig.as_bytes()))
    }

    /// The signature of the mail thread a run started by mail answers in (the bridge puts
    /// it in the run's input, so a run started by anyone else cannot claim a thread).
    pub fn thread_sig(&self, message_id: &str, from: &str) -> String {
        self.key.sign(&["thread", message_id, from], 32)
    }

    pub fn thread_ok(&self, message_id: &str, from: &str, sig: &str) -> bool {
        self.key.verify(&["thread", message_id, from], sig, 32)
    }
}

/// The Message-ID (without angle brackets) of a prompt mail.
pub fn message_id(t: &Token, domain: &str) -> String {
    format!("{}@{domain}", t.render())
}

/// The subject tag of a prompt mail.
pub fn subject_tag(t: &Token) -> String {
    format!("[ref {}]", t.render())
}

/// Where a reply names a token, most trusted first.
#[derive(Debug, Default)]
pub struct Found {
    /// A token found in In-Reply-To / References, the plus-address or the subject tag.
    pub token: Option<Token>,
    /// Whether anything looked like one of ours (a malformed one is a forgery, not a new
    /// conversation).
    pub looks_ours: bool,
}

/// Finds the token a reply carries: In-Reply-To and References first, then a plus-address
/// among the recipients, then the subject tag.
pub fn find(ids: &[String], recipients: &[String], subject: &str) -> Found {
    let mut found = Found::default();
    for id in ids {
        let id = id.trim().trim_start_matches('<');
        if id.starts_with(PREFIX) {
            found.looks_ours = true;
            if let Some(t) = Token::parse_prefix(id) {
                found.token = Some(t);
                return found;
            }
        }
    }
    for r in recipients {
        let local = r.split('@').next().unwrap_or_default();
        if let Some((_, tag)) = local.split_once('+')
            && tag.starts_with(PREFIX)
        {
            found.looks_ours = true;
            if let Some(t) = Token::parse_prefix(tag) {
                found.token = Some(t);
                return found;
            }
        }
    }
    if let Some(i) = subject.find("[ref ") {
        found.looks_ours = true;
        found.token = Token::parse_prefix(&subject[i + 5..]);
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer() -> Signer {
        Signer::new(b"0123456789abcdef0123456789abcdef".to_vec())
    }

    #[test]
    fn a_token_verifies_only_for_its_prompt() {
        let s = signer();
        let t = s.token(7, "run-1", "decide");
        assert_eq!(t.sig.len(), SIG_LEN);
        assert!(s.verify(&t, "run-1", "decide"));
        assert!(!s.verify(&t, "run-2", "decide"));
        assert!(!s.verify(&t, "run-1", "other"));
        let forged = Token {
            prompt: 7,
            sig: "0000000000000000".into(),
        };
        assert!(!s.verify(&forged, "run-1", "decide"));
        let other_key = Signer::new(b"another key".to_vec());
        assert!(!other_key.verify(&t, "run-1", "decide"));
    }

    #[test]
    fn tokens_are_found_in_headers_then_plus_addresses_then_the_subject() {
        let t = signer().token(12, "r", "w");
        let id = message_id(&t, "example.test");
        let f = find(&["other@x".into(), id.clone()], &[], "");
        assert_eq!(f.token.as_ref(), Some(&t));
        let plus = format!("bot+{}@example.test", t.render());
        assert_eq!(find(&[], &[plus], "").token.as_ref(), Some(&t));
        let subject = format!("Re: approval: deploy? {}", subject_tag(&t));
        assert_eq!(find(&[], &[], &subject).token.as_ref(), Some(&t));
        let none = find(&["CAF=abc@mail.gmail.com".into()], &["bot@x".into()], "Hi");
        assert!(none.token.is_none() && !none.looks_ours);
        let broken = find(&["sb.12.nothex@example.test".into()], &[], "");
        assert!(broken.token.is_none() && broken.looks_ours);
    }
}
