//! Turns what a run shows during one chat request into the assistant's message.
//!
//! The message is what the run said (`say` records), with LLM replies streamed as they are
//! generated (a `say` that repeats a streamed reply is not shown twice). When the run said
//! nothing, its last LLM reply; when it stops on an `ask` having said nothing, the question
//! (with numbered choices); when it completes having said nothing, its output's `text`
//! (or `answer`, or the output as JSON). Pure: no I/O, fed one event at a time.

use protocol::{LedgerRecord, RecordStatus};
use serde_json::Value;

const SEP: &str = "\n\n";

fn text(v: Option<&Value>) -> Option<&str> {
    v.and_then(|v| v.get("text")).and_then(Value::as_str)
}

#[derive(Debug, Default)]
pub(crate) struct Assembler {
    emitted: bool,
    /// An LLM reply is streaming (deltas seen, its record not yet).
    in_llm: bool,
    /// The last reply that was streamed, until a `say` repeats it.
    streamed: Option<String>,
    /// The last reply that was not streamed (shown only if nothing else is).
    unshown: Option<String>,
}

impl Assembler {
    fn emit(&mut self, text: &str, out: &mut Vec<String>) {
        if text.is_empty() {
            return;
        }
        if self.emitted {
            out.push(SEP.into());
        }
        out.push(text.to_owned());
        self.emitted = true;
    }

    /// A streamed LLM token.
    pub(crate) fn delta(&mut self, d: &str) -> Vec<String> {
        let mut out = Vec::new();
        if !self.in_llm {
            self.in_llm = true;
            self.emit(d, &mut out);
        } else if !d.is_empty() {
            out.push(d.to_owned());
        }
        out
    }

    /// A ledger record of the run.
    pub(crate) fn record(&mut self, r: &LedgerRecord) -> Vec<String> {
        let mut out = Vec::new();
        match (r.status, r.effect_kind()) {
            (RecordStatus::Completed, "say") => {
                let said = text(r.effect.as_ref().map(|e| &e.payload)).unwrap_or_default();
                if self.streamed.as_deref() == Some(said) {
                    self.streamed = None;
                } else {
                    self.emit(said, &mut out);
                }
                self.unshown = None;
            }
            (RecordStatus::Completed, "") if r.idempotency_key.is_some() => {
                if let Some(t) = text(r.result.as_ref()) {
                    if std::mem::take(&mut self.in_llm) {
                        self.streamed = Some(t.to_owned());
                    } else {
                        self.unshown = Some(t.to_owned());
                    }
                }
            }
            _ => {}
        }
        out
    }

    /// At the end: true when something was shown already, or is now (an unshown reply).
    fn shown_something(&mut self, out: &mut Vec<String>) -> bool {
        if self.emitted {
            return true;
        }
        match self.unshown.take() {
            Some(t) => {
                self.emit(&t, out);
                true
            }
            None => false,
        }
    }

    /// The run stopped on an `ask`.
    pub(crate) fn ask(&mut self, prompt: &str, choices: &[String]) -> Vec<String> {
        let mut out = Vec::new();
        if self.shown_something(&mut out) {
            return out;
        }
        let mut q = prompt.to_owned();
        for (i, c) in choices.iter().enumerate() {
            q.push_str(&format!("\n{}. {c}", i + 1));
        }
        self.emit(&q, &mut out);
        out
    }

    /// The run completed with `output`.
    pub(crate) fn completed(&mut self, output: Option<&Value>) -> Vec<String> {
        let mut out = Vec::new();
        if self.shown_something(&mut out) {
            return out;
        }
        let text = match output {
            Some(o) => ["text", "answer", "reply"]
                .iter()
                .find_map(|k| o.get(k).and_then(Value::as_str).map(str::to_owned))
                .or_else(|| o.as_str().map(str::to_owned))
                .unwrap_or_else(|| match o {
                    Value::Null => String::new(),
                    Value::Object(m) if m.is_empty() => String::new(),
                    other => other.to_string(),
                }),
            None => String::new(),
        };
        self.emit(&text, &mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rec(v: Value) -> LedgerRecord {
        let mut base = json!({"seq": 1, "run_id": "r", "step_id": "s", "node_id": "n",
            "started_at": "t", "attempt": 1, "actor": {"kind": "runner"}, "prev_hash": "", "record_hash": ""});
        for (k, x) in v.as_object().unwrap() {
            base[k] = x.clone();
        }
        serde_json::from_value(base).unwrap()
    }

    fn say(t: &str) -> LedgerRecord {
        rec(json!({"status": "completed", "effect": {"type": "say", "payload": {"text": t}}}))
    }

    fn llm(t: &str) -> LedgerRecord {
        rec(json!({"status": "completed", "idempotency_key": "r:s:1", "result": {"text": t}}))
    }

    fn all(steps: Vec<Vec<String>>) -> String {
        steps.concat().concat()
    }

    #[test]
    fn a_streamed_reply_that_is_then_said_shows_once() {
        let mut a = Assembler::default();
        let s = vec![
            a.delta("he"),
            a.delta("llo"),
            a.record(&llm("hello")),
            a.record(&say("hello")),
        ];
        let ask = a.ask("Your message?", &[]);
        assert_eq!(all(s), "hello");
        assert!(ask.is_empty(), "the question is not added after a reply");
    }

    #[test]
    fn an_unstreamed_reply_is_said_and_other_says_are_separated() {
        let mut a = Assembler::default();
        let s = vec![
            a.record(&llm("hi")),
            a.record(&say("hi")),
            a.record(&say("more")),
        ];
        assert_eq!(all(s), "hi\n\nmore");
    }

    #[test]
    fn a_question_with_choices_when_nothing_was_said() {
        let mut a = Assembler::default();
        let q = a.ask("Deploy?", &["approve".into(), "reject".into()]);
        assert_eq!(q.concat(), "Deploy?\n1. approve\n2. reject");
    }

    #[test]
    fn output_text_when_nothing_was_said() {
        let mut a = Assembler::default();
        assert_eq!(a.completed(Some(&json!({"text": "done"}))).concat(), "done");
        let mut b = Assembler::default();
        assert_eq!(b.completed(Some(&json!({"n": 1}))).concat(), "{\"n\":1}");
        let mut c = Assembler::default();
        let s = c.record(&llm("only the model spoke"));
        assert!(s.is_empty());
        assert_eq!(c.completed(None).concat(), "only the model spoke");
    }
}
