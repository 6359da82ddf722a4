//! Whether a mail's `From:` is authenticated, read from the `Authentication-Results`
//! header (RFC 8601) that the operator's own receiving server added. `From:` alone proves
//! nothing: anybody can write any address there. With `SWITCHBOARD_EMAIL_AUTHSERV_ID` set,
//! a mail counts only when the topmost `Authentication-Results` naming that authserv-id
//! shows `dmarc=pass` for the `From:` domain, or (when DMARC was not evaluated there)
//! `dkim=pass` for a signing domain aligned with it. A DMARC verdict other than pass
//! decides against the mail, whatever else the header says. Quoted strings and comments
//! are parsed as such, so text a sender controls (a quoted `smtp.mailfrom`) cannot add a
//! result.
//! Headers naming any other authserv-id are ignored (a sender can write those too); the
//! receiving server puts its own header on top and, by RFC 8601 section 5, removes forged
//! ones with its id. Pure.

/// Why a mail's sender is not authenticated, or `Ok` when it is.
pub fn check(headers: &[(&str, &str)], authserv_id: &str, from: &str) -> Result<(), String> {
    let from_domain = from
        .rsplit_once('@')
        .map(|(_, d)| d.trim().to_ascii_lowercase())
        .unwrap_or_default();
    let Some(results) = headers
        .iter()
        .filter(|(name, _)| name.eq_ignore_ascii_case("Authentication-Results"))
        .filter_map(|(_, value)| parse(value))
        .find(|r| r.authserv_id.eq_ignore_ascii_case(authserv_id))
    else {
        return Err(format!(
            "no Authentication-Results from {authserv_id}: the sender is not authenticated"
        ));
    };
    // A DMARC verdict decides when there is one: every DMARC result must be a pass for the
    // From: domain itself.
    let mut dmarc = results
        .methods
        .iter()
        .filter(|m| m.method == "dmarc")
        .peekable();
    if dmarc.peek().is_some() {
        let pass = dmarc.all(|m| {
            m.result == "pass"
                && m.prop("header.from")
                    .is_some_and(|d| d.eq_ignore_ascii_case(&from_domain))
        });
        return if pass {
            Ok(())
        } else {
            Err(format!(
                "{authserv_id} shows no dmarc=pass for {from_domain}"
            ))
        };
    }
    let dkim_aligned = results.methods.iter().any(|m| {
        m.method == "dkim"
            && m.result == "pass"
            && m.prop("header.d")
                .or_else(|| m.prop_domain("header.i"))
                .is_some_and(|d| aligned(d, &from_domain))
    });
    if dkim_aligned {
        Ok(())
    } else {
        Err(format!(
            "{authserv_id} shows neither dmarc=pass nor an aligned dkim=pass for {from_domain}"
        ))
    }
}

/// Relaxed alignment, without a public-suffix list: the same domain, or one a subdomain of
/// the other (a bare top-level domain never aligns).
fn aligned(signer: &str, from: &str) -> bool {
    let signer = signer.trim().trim_end_matches('.').to_ascii_lowercase();
    if signer.is_empty() || from.is_empty() {
        return false;
    }
    let sub = |a: &str, b: &str| a.ends_with(&format!(".{b}")) && b.contains('.');
    signer == from || sub(from, &signer) || sub(&signer, from)
}

/// One `Authentication-Results` header.
#[derive(Debug, PartialEq)]
struct Results {
    authserv_id: String,
    methods: Vec<Method>,
}

/// One `method=result prop=value …` of it.
#[derive(Debug, PartialEq)]
struct Method {
    method: String,
    result: String,
    props: Vec<(String, String)>,
}

impl Method {
    fn prop(&self, name: &str) -> Option<&str> {
        self.props
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The domain of an identity property (`header.i=user@example.com` → `example.com`).
    fn prop_domain(&self, name: &str) -> Option<&str> {
        self.prop(name)
            .map(|v| v.rsplit_once('@').map_or(v, |(_, d)| d))
    }
}

/// Drops `(comments)` (nested) and unfolds lines.
fn strip_comments(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    let (mut depth, mut quoted) = (0usize, false);
    for c in v.chars() {
        match c {
            '"' if depth == 0 => {
                quoted = !quoted;
                out.push(c);
            }
            '(' if !quoted => depth += 1,
            ')' if !quoted && depth > 0 => depth -= 1,
            '\r' | '\n' => out.push(' '),
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out
}

/// Splits `text` at `sep` (at whitespace when `sep` is `None`), never inside quotes.
fn split_unquoted(text: &str, sep: Option<char>) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut quoted = false;
    for c in text.chars() {
        let at_sep = match sep {
            Some(s) => c == s,
            None => c.is_whitespace(),
        };
        if c == '"' {
            quoted = !quoted;
        }
        if at_sep && !quoted {
            out.push(String::new());
        } else if let Some(last) = out.last_mut() {
            last.push(c);
        }
    }
    out.retain(|s| !s.trim().is_empty());
    out
}

fn parse(value: &str) -> Option<Results> {
    let text = strip_comments(value);
    let parts = split_unquoted(&text, Some(';'));
    let (head, rest) = parts.split_first()?;
    let authserv_id = split_unquoted(head, None).into_iter().next()?;
    let methods = rest
        .iter()
        .filter_map(|p| {
            let words = split_unquoted(p, None);
            let (first, others) = words.split_first()?;
            let (method, result) = first.split_once('=')?;
            let props = others
                .iter()
                .filter_map(|w| w.split_once('='))
                .map(|(k, v)| (k.to_owned(), v.trim_matches('"').to_owned()))
                .collect();
            Some(Method {
                method: method.to_ascii_lowercase(),
                result: result.to_ascii_lowercase(),
                props,
            })
        })
        .collect();
    Some(Results {
        authserv_id,
        methods,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "mx.switchboard.test";

    fn ok(headers: &[(&str, &str)], from: &str) -> bool {
        check(headers, ID, from).is_ok()
    }

    #[test]
    fn dmarc_or_aligned_dkim_from_our_server_authenticates() {
        let dmarc = (
            "Authentication-Results",
            "mx.switchboard.test;\r\n dkim=none; spf=pass smtp.mailfrom=example.com;\r\n dmarc=pass (p=reject dis=none) header.from=example.com",
        );
        assert!(ok(&[dmarc], "alice@example.com"));
        let dkim = (
            "authentication-results",
            "MX.Switchboard.test 1; dkim=pass (2048-bit key) header.d=mail.example.com header.s=s1",
        );
        assert!(ok(&[dkim], "alice@example.com"));
        let by_i = (
            "Authentication-Results",
            "mx.switchboard.test; dkim=pass header.i=@example.com",
        );
        assert!(ok(&[by_i], "alice@example.com"));
    }

    #[test]
    fn spoofed_or_foreign_results_do_not() {
        let none: [(&str, &str); 0] = [];
        assert!(
            check(&none, ID, "alice@example.com")
                .unwrap_err()
                .contains("no Authentication-Results")
        );
        // A header from another server (any sender can write one) is ignored.
        let foreign = (
            "Authentication-Results",
            "evil.test; dmarc=pass header.from=example.com",
        );
        assert!(!ok(&[foreign], "alice@example.com"));
        let fail = (
            "Authentication-Results",
            "mx.switchboard.test; dmarc=fail header.from=example.com; dkim=pass header.d=evil.test",
        );
        assert!(!ok(&[fail], "alice@example.com"));
        // The topmost header of our server counts, not a forged one further down.
        let top = (
            "Authentication-Results",
            "mx.switchboard.test; dmarc=fail header.from=example.com",
        );
        let below = (
            "Authentication-Results",
            "mx.switchboard.test; dmarc=pass header.from=example.com",
        );
        assert!(!ok(&[top, below], "alice@example.com"));
        // A pass for another From domain, a bare TLD, or a method name in a comment.
        let other = (
            "Authentication-Results",
            "mx.switchboard.test; dmarc=pass header.from=evil.test",
        );
        assert!(!ok(&[other], "alice@example.com"));
        let tld = (
            "Authentication-Results",
            "mx.switchboard.test; dkim=pass header.d=com",
        );
        assert!(!ok(&[tld], "alice@example.com"));
        let comment = (
            "Authentication-Results",
            "mx.switchboard.test; spf=fail (dmarc=pass)",
        );
        assert!(!ok(&[comment], "alice@example.com"));
        // Text the sender controls, quoted by our server, adds no result.
        let quoted = (
            "Authentication-Results",
            "mx.switchboard.test; spf=fail smtp.mailfrom=\"x; dmarc=pass header.from=example.com y\"@evil.test",
        );
        assert!(!ok(&[quoted], "alice@example.com"));
        // A DMARC failure decides, even next to an aligned DKIM pass; a pass names the domain.
        let mixed = (
            "Authentication-Results",
            "mx.switchboard.test; dkim=pass header.d=example.com; dmarc=fail header.from=example.com",
        );
        assert!(!ok(&[mixed], "alice@example.com"));
        let bare = ("Authentication-Results", "mx.switchboard.test; dmarc=pass");
        assert!(!ok(&[bare], "alice@example.com"));
    }
}
