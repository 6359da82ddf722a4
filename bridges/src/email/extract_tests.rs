//! A corpus of replies the way common mail clients write them.

use super::{answer_text, match_choice, reply_text};

fn choices() -> Vec<String> {
    vec!["approve".into(), "reject".into()]
}

/// The text body of a raw MIME message, as the bridge reads it (HTML turned into text).
fn body_of(raw: &str) -> String {
    let msg = mail_parser::MessageParser::default()
        .parse(raw.as_bytes())
        .unwrap_or_default();
    super::message_text(&msg)
}

#[test]
fn gmail_plain_text() {
    let body = "approve\r\n\r\nOn Fri, Nov 27, 2026 at 10:00 AM Switchboard <bot@example.test> wrote:\r\n\r\n> Approve or reject: deploy v2\r\n>\r\n> 1. approve\r\n> 2. reject\r\n";
    assert_eq!(reply_text(body), "approve");
}

#[test]
fn gmail_wraps_a_long_attribution_line() {
    let body = "Looks good, ship it.\n\nOn Fri, Nov 27, 2026 at 10:00 AM Switchboard Notifications <\nswitchboard-notifications@example.test> wrote:\n\n> What should the release notes say?\n";
    assert_eq!(reply_text(body), "Looks good, ship it.");
}

#[test]
fn gmail_in_french() {
    let body = "2\n\nLe ven. 27 nov. 2026 à 10:00, Switchboard <bot@example.test> a écrit :\n\n> Approve or reject: deploy v2\n";
    assert_eq!(reply_text(body), "2");
}

#[test]
fn outlook_desktop() {
    let body = "Approve.\r\n\r\nThanks,\r\nBob\r\n\r\n-----Original Message-----\r\nFrom: Switchboard <bot@example.test>\r\nSent: Friday, November 27, 2026 10:00 AM\r\nTo: Bob <bob@example.test>\r\nSubject: approval: Approve or reject: deploy v2\r\n\r\nApprove or reject: deploy v2\r\n";
    let text = reply_text(body);
    assert_eq!(text, "Approve.\n\nThanks,\nBob");
    assert_eq!(match_choice(&choices(), &text).as_deref(), Some("approve"));
}

#[test]
fn outlook_web_with_an_underscore_separator() {
    let body = "reject\n\n________________________________\nFrom: Switchboard <bot@example.test>\nSent: Friday, November 27, 2026 10:00\nTo: bob@example.test\nSubject: approval\n\nApprove or reject: deploy v2\n";
    assert_eq!(reply_text(body), "reject");
}

#[test]
fn outlook_without_a_separator_line() {
    let body = "approve\n\nFrom: Switchboard <bot@example.test>\nDate: Friday, 27 November 2026 at 10:00\nTo: Bob <bob@example.test>\nSubject: approval\n\nApprove or reject: deploy v2\n";
    assert_eq!(reply_text(body), "approve");
}

#[test]
fn apple_mail_on_macos() {
    let body = "Approve\n\n> On 27 Nov 2026, at 10:00, Switchboard <bot@example.test> wrote:\n> \n> Approve or reject: deploy v2\n";
    assert_eq!(reply_text(body), "Approve");
}

#[test]
fn apple_mail_on_an_iphone_with_its_signature() {
    let body = "Approve\n\nSent from my iPhone\n\n> On Nov 27, 2026, at 10:00, Switchboard <bot@example.test> wrote:\n>\n> Approve or reject: deploy v2\n";
    assert_eq!(reply_text(body), "Approve");
}

#[test]
fn thunderbird() {
    let body =
        "The staging cluster, please.\n\nOn 11/27/26 10:00, Switchboard wrote:\n> Which cluster?\n";
    assert_eq!(reply_text(body), "The staging cluster, please.");
}

#[test]
fn plain_quoting_and_a_signature() {
    let body = "> Approve or reject: deploy v2\n\napprove\n\n-- \nAlice Example\nRelease manager\n";
    // The quote comes first: nothing is above it, so the answer is what follows it.
    assert_eq!(reply_text(body), "");
    assert_eq!(answer_text(body), "approve");
}

#[test]
fn bottom_posting_after_quotes_keeps_the_answer() {
    let body = "> Approve or reject: deploy v2\n> 1. approve\n> 2. reject\n\n2\n";
    assert_eq!(answer_text(body), "2");
}

#[test]
fn a_signature_dash_dash_line_ends_the_text() {
    let body = "approve\n-- \nAlice\n";
    assert_eq!(reply_text(body), "approve");
}

#[test]
fn html_only_gmail() {
    let raw = "From: Alice <alice@example.test>\r\nTo: bot@example.test\r\nSubject: Re: approval\r\nMIME-Version: 1.0\r\nContent-Type: text/html; charset=\"UTF-8\"\r\n\r\n<div dir=\"ltr\">Approve.</div><br><div class=\"gmail_quote\"><div dir=\"ltr\" class=\"gmail_attr\">On Fri, Nov 27, 2026 at 10:00 AM Switchboard &lt;<a href=\"mailto:bot@example.test\">bot@example.test</a>&gt; wrote:<br></div><blockquote class=\"gmail_quote\" style=\"margin:0px 0px 0px 0.8ex\">Approve or reject: deploy v2<br>1. approve<br>2. reject</blockquote></div>\r\n";
    let text = reply_text(&body_of(raw));
    assert_eq!(text, "Approve.");
    assert_eq!(match_choice(&choices(), &text).as_deref(), Some("approve"));
}

#[test]
fn html_only_outlook() {
    let raw = "From: Bob <bob@example.test>\r\nTo: bot@example.test\r\nSubject: RE: approval\r\nMIME-Version: 1.0\r\nContent-Type: text/html; charset=\"us-ascii\"\r\n\r\n<html><body><div>reject</div><div>Bob</div><hr style=\"display:inline-block;width:98%\"><div id=\"divRplyFwdMsg\"><b>From:</b> Switchboard &lt;bot@example.test&gt;<br><b>Sent:</b> Friday, November 27, 2026 10:00 AM<br><b>To:</b> Bob<br><b>Subject:</b> approval</div><div>Approve or reject: deploy v2</div></body></html>\r\n";
    let text = reply_text(&body_of(raw));
    assert!(text.starts_with("reject"), "{text:?}");
    assert!(!text.contains("deploy v2"), "{text:?}");
    assert_eq!(match_choice(&choices(), &text).as_deref(), Some("reject"));
}

#[test]
fn multipart_alternative_prefers_the_text_part() {
    let raw = "From: Alice <alice@example.test>\r\nSubject: Re: x\r\nMIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary=\"b1\"\r\n\r\n--b1\r\nContent-Type: text/plain; charset=UTF-8\r\n\r\nreject\r\n\r\nOn Fri, Nov 27, 2026 at 10:00 AM Switchboard <bot@example.test> wrote:\r\n> Approve or reject\r\n--b1\r\nContent-Type: text/html; charset=UTF-8\r\n\r\n<div>reject</div>\r\n--b1--\r\n";
    assert_eq!(reply_text(&body_of(raw)), "reject");
}

#[test]
fn choices_match_by_number_name_case_and_punctuation() {
    let c = choices();
    for (text, want) in [
        ("2", Some("reject")),
        ("2.", Some("reject")),
        ("(1)", Some("approve")),
        ("approve", Some("approve")),
        ("Approve.", Some("approve")),
        ("APPROVE!", Some("approve")),
        ("  reject  ", Some("reject")),
        ("approve\n\nThanks!", Some("approve")),
        ("3", None),
        ("0", None),
        ("maybe", None),
        ("", None),
    ] {
        assert_eq!(match_choice(&c, text).as_deref(), want, "{text:?}");
    }
}
