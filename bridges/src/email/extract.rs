//! What a person wrote in a reply, without what their mail client added: the quoted
//! history (`>` lines, "On … wrote:" headers in several languages, Outlook's "From: / Sent:"
//! blocks and separator lines, forwarded-message markers), signatures (`-- `, "Sent from my
//! iPhone") and, for HTML-only mail, the markup (mail-parser turns HTML into text first).
//! Then the answer is matched to the prompt's choices. Pure: no I/O.

/// Lines that start a quoted header ("On Mon, … wrote:") end with one of these.
const WROTE: &[&str] = &[
    "wrote:",
    "a écrit :",
    "a écrit:",
    "schrieb:",
    "escribió:",
    "scritto:",
    "schreef:",
    "skrev:",
];

/// Lines that start a quoted header begin with one of these.
const WROTE_START: &[&str] = &["On ", "Le ", "Am ", "El ", "Il ", "Op ", "Den ", "Em "];

/// Separators that start quoted or forwarded history on a line of their own.
const SEPARATORS: &[&str] = &[
    "-----Original Message-----",
    "----- Original Message -----",
    "-------- Original Message --------",
    "-------- Forwarded Message --------",
    "---------- Forwarded message ---------",
    "Begin forwarded message:",
];

/// Mobile and webmail signatures that end what was written.
const SIGNATURES: &[&str] = &[
    "Sent from my ",
    "Sent from Outlook",
    "Sent from Mail for Windows",
    "Get Outlook for ",
    "Sent with Proton Mail",
    "Envoyé de mon ",
    "Von meinem ",
];

/// Outlook's reply header fields, after a `From:` line.
const OUTLOOK_FIELDS: &[&str] = &["Sent:", "Date:", "To:", "Subject:", "Cc:"];

/// Where HTML mail clients start the quoted history: Gmail's and Apple Mail's
/// `<blockquote>`, Gmail's attribution block, Outlook's reply header.
const HTML_QUOTE_MARKERS: &[&str] = &[
    "<blockquote",
    "class=\"gmail_quote",
    "id=\"divrplyfwdmsg\"",
    "id=\"appendonsend\"",
];

/// Tags that start a new line when HTML is read as text.
const HTML_BLOCKS: &[&str] = &[
    "<div", "</div", "<p", "</p", "<hr", "<li", "<tr", "<h1", "<h2", "<h3", "<table",
];

/// The text of a message: its text/plain part, or its HTML read as text (what follows the
/// quote markers dropped, blocks on lines of their own).
pub fn message_text(msg: &mail_parser::Message<'_>) -> String {
    match msg.text_part(0) {
        Some(p) if !p.is_text_html() => p.text_contents().unwrap_or("").to_owned(),
        _ => msg.body_html(0).map(|h| html_text(&h)).unwrap_or_default(),
    }
}

/// HTML read as text, up to the first quote marker.
pub fn html_text(html: &str) -> String {
    let lower = html.to_ascii_lowercase();
    let cut = HTML_QUOTE_MARKERS
        .iter()
        .filter_map(|m| lower.find(m))
        .map(|at| lower[..=at].rfind('<').unwrap_or(at))
        .min()
        .unwrap_or(html.len());
    let lower = &lower[..cut];
    let mut prepared = String::with_capacity(cut + 64);
    let mut last = 0;
    for (i, _) in lower.match_indices('<') {
        let rest = &lower[i..];
        let block = HTML_BLOCKS.iter().any(|b| {
            rest.starts_with(b)
                && rest[b.len()..]
                    .chars()
                    .next()
                    .is_some_and(|c| c == '>' || c == ' ' || c == '/')
        });
        if block {
            prepared.push_str(&html[last..i]);
            prepared.push_str("<br>");
            last = i;
        }
    }
    prepared.push_str(&html[last..cut]);
    mail_parser::decoders::html::html_to_text(&prepared)
}

/// The text a person wrote above the quoted history of a reply.
pub fn reply_text(body: &str) -> String {
    let body = body.replace("\r\n", "\n").replace('\r', "\n");
    let lines: Vec<&str> = body.lines().collect();
    let end = (0..lines.len())
        .find(|&i| starts_history(&lines, i))
        .unwrap_or(lines.len());
    let kept: Vec<&str> = lines[..end].iter().map(|l| l.trim_end()).collect();
    kept.join("\n").trim().to_owned()
}

/// The answer in a reply: the text above the quoted history or, when the person wrote below
/// the quote (bottom-posting), the unquoted text after it.
pub fn answer_text(body: &str) -> String {
    let top = reply_text(body);
    if !top.is_empty() {
        return top;
    }
    let body = body.replace("\r\n", "\n").replace('\r', "\n");
    let lines: Vec<&str> = body.lines().collect();
    let unquoted: Vec<&str> = (0..lines.len())
        .filter(|&i| !lines[i].starts_with('>') && !is_wrote_header(&lines, i))
        .map(|i| lines[i])
        .collect();
    reply_text(&unquoted.join("\n"))
}

/// Whether line `i` starts the quoted history or a signature.
fn starts_history(lines: &[&str], i: usize) -> bool {
    let line = lines[i].trim();
    let raw = lines[i];
    if raw.starts_with('>') || raw == "-- " || line == "--" || line == "__" {
        return true;
    }
    if SEPARATORS.iter().any(|s| line.eq_ignore_ascii_case(s)) {
        return true;
    }
    if SIGNATURES.iter().any(|s| line.starts_with(s)) {
        return true;
    }
    // Outlook's separator: a line of underscores, then the header block.
    if line.len() >= 20 && line.chars().all(|c| c == '_') {
        return true;
    }
    if is_wrote_header(lines, i) {
        return true;
    }
    // Outlook: "From: …" followed within a few lines by "Sent:", "To:", "Subject:" …
    let plain = line.trim_start_matches('*');
    if plain.starts_with("From:") {
        return lines
            .iter()
            .skip(i + 1)
            .take(4)
            .map(|l| l.trim().trim_start_matches('*'))
            .any(|l| OUTLOOK_FIELDS.iter().any(|f| l.starts_with(f)));
    }
    false
}

/// "On Mon, Nov 23, 2026 at 10:00 AM Bot <bot@x> wrote:", possibly wrapped over up to
/// three lines (Gmail wraps long ones).
fn is_wrote_header(lines: &[&str], i: usize) -> bool {
    let first = lines[i].trim();
    if !WROTE_START.iter().any(|s| first.starts_with(s)) {
        return false;
    }
    let mut joined = String::new();
    for l in lines.iter().skip(i).take(3) {
        let l = l.trim();
        if l.is_empty() {
            break;
        }
        if !joined.is_empty() {
            joined.push(' ');
        }
        joined.push_str(l);
        if WROTE.iter().any(|w| joined.ends_with(w)) {
            return true;
        }
    }
    false
}

/// A reply's answer to a prompt with `choices`: "2", "2.", "approve", "Approve." or
/// "APPROVE!" all pick choice 2 "approve". The whole text is tried first, then its first
/// line (a person may add a line of thanks).
pub fn match_choice(choices: &[String], text: &str) -> Option<String> {
    let first_line = text.lines().map(str::trim).find(|l| !l.is_empty());
    [Some(text), first_line]
        .into_iter()
        .flatten()
        .find_map(|t| match_one(choices, t))
}

fn match_one(choices: &[String], text: &str) -> Option<String> {
    let t = text
        .trim()
        .trim_end_matches(|c: char| ".!,;:)".contains(c))
        .trim_start_matches('(')
        .trim();
    if t.is_empty() {
        return None;
    }
    if let Ok(n) = t.parse::<usize>()
        && (1..=choices.len()).contains(&n)
    {
        return Some(choices[n - 1].clone());
    }
    choices
        .iter()
        .find(|c| c.trim().eq_ignore_ascii_case(t))
        .cloned()
}

#[cfg(test)]
#[path = "extract_tests.rs"]
mod tests;
