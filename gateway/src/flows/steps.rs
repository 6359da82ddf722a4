//! Compiles the leaf steps (everything but `if` and `loop`) of a flow.

use std::time::Duration;

use protocol::EventScope;
use serde_json::Value;

use super::*;

impl Cx<'_> {
    pub(super) fn simple_step(
        &mut self,
        opts: &StepOpts,
        node: String,
        kpos: Pos,
        body: &Node,
    ) -> Result<Step, FlowError> {
        let mut retries = 0;
        let kind = match opts.kind {
            "say" => {
                opts.only(self, &["id"])?;
                StepKind::Say(self.text(body)?)
            }
            "ask" => StepKind::Ask(self.ask(opts, body)?),
            "llm" => {
                opts.only(self, &["id", "retries"])?;
                retries = self.retries(opts)?;
                StepKind::Llm(self.llm(body)?)
            }
            "wait" => {
                opts.only(self, &["id"])?;
                StepKind::Wait(self.wait(body)?)
            }
            "wait_event" => {
                opts.only(self, &["id", "scope"])?;
                StepKind::WaitEvent {
                    event: self.text(body)?,
                    scope: self.scope(opts)?,
                }
            }
            "emit" => {
                opts.only(self, &["id", "scope", "payload"])?;
                let payload = match opts.get("payload") {
                    Some(p) => self.value(p)?,
                    None => ValueTpl::Lit(Value::Null),
                };
                StepKind::Emit {
                    event: self.text(body)?,
                    scope: self.scope(opts)?,
                    payload,
                }
            }
            "set" => {
                opts.only(self, &["id"])?;
                let Kind::Map(m) = &body.kind else {
                    return Err(self.err(
                        body.pos,
                        "`set` is a mapping of variable names to values".into(),
                    ));
                };
                let mut vars = Vec::with_capacity(m.len());
                for (k, p, v) in m {
                    check_id(self, k, *p, "variable name")?;
                    vars.push((k.clone(), self.value(v)?));
                }
                StepKind::Set(vars)
            }
            "call" => {
                opts.only(self, &["id", "input"])?;
                let flow = self.string(body)?;
                check_id(self, &flow, body.pos, "called flow")?;
                let input = match opts.get("input") {
                    Some(i) => self.value(i)?,
                    None => ValueTpl::Lit(Value::Object(Default::default())),
                };
                StepKind::Call { flow, input }
            }
            "http" => {
                opts.only(self, &["id", "retries"])?;
                retries = self.retries(opts)?;
                StepKind::Http(self.http(body)?)
            }
            "output" => {
                opts.only(self, &["id"])?;
                StepKind::Output(self.value(body)?)
            }
            other => return Err(self.err(kpos, format!("unknown step `{other}`"))),
        };
        Ok(Step {
            node,
            kind,
            retries,
        })
    }

    fn retries(&self, opts: &StepOpts) -> Result<u32, FlowError> {
        opts.get("retries")
            .map(|r| self.int(r, 0, MAX_RETRIES, "retries").map(|v| v as u32))
            .transpose()
            .map(Option::unwrap_or_default)
    }

    fn scope(&self, opts: &StepOpts) -> Result<EventScope, FlowError> {
        let Some(n) = opts.get("scope") else {
            return Ok(EventScope::Session);
        };
        let s = self.string(n)?;
        EventScope::parse(&s)
            .ok_or_else(|| self.err(n.pos, format!("scope `{s}` must be run, session or global")))
    }

    fn ask(&mut self, opts: &StepOpts, body: &Node) -> Result<AskStep, FlowError> {
        opts.only(
            self,
            &[
                "id",
                "choices",
                "allow_free_text",
                "timeout",
                "default",
                "approvers",
                "quorum",
                "reject_on",
                "remind",
                "remind_max",
                "escalate",
            ],
        )?;
        let prompt = self.text(body)?;
        let choices = match opts.get("choices") {
            Some(c) => match &c.kind {
                Kind::Seq(items) if !items.is_empty() => items
                    .iter()
                    .map(|i| self.string(i))
                    .collect::<Result<Vec<_>, _>>()?,
                _ => {
                    return Err(
                        self.err(c.pos, "choices must be a non-empty list of strings".into())
                    );
                }
            },
            None => Vec::new(),
        };
        let allow_free_text = match opts.get("allow_free_text") {
            Some(b) => self.boolean(b, "allow_free_text")?,
            None => choices.is_empty(),
        };
        if choices.is_empty() && !allow_free_text {
            let pos = opts.get("allow_free_text").map_or(body.pos, |n| n.pos);
            return Err(self.err(pos, "an ask without choices must allow free text".into()));
        }
        let timeout = opts
            .get("timeout")
            .map(|t| self.duration(t, "timeout"))
            .transpose()?;
        let default = opts.get("default").map(|d| self.text(d)).transpose()?;
        let team = self.team(&|k| opts.get(k), &choices, allow_free_text)?;
        if let (Some(_), Some(d)) = (&team, opts.get("default"))
            && choices
                .first()
                .is_some_and(|first| self.string(d).is_ok_and(|s| s == *first))
        {
            return Err(self.err(
                d.pos,
                format!("a prompt with approvers cannot default to `{}`: a timeout would approve without its quorum", choices[0]),
            ));
        }
        Ok(AskStep {
            prompt,
            choices,
            allow_free_text,
            timeout,
            default,
            team,
        })
    }

    fn llm(&mut self, body: &Node) -> Result<LlmStep, FlowError> {
        let Kind::Map(m) = &body.kind else {
            return Ok(LlmStep {
                prompt: self.text(body)?,
                system: None,
                history: false,
                model: None,
                temperature: None,
                max_tokens: None,
                agent: None,
            });
        };
        let o = StepOpts {
            map: m,
            kind: "llm",
        };
        o.only(
            self,
            &[
                "prompt",
                "system",
                "history",
                "model",
                "temperature",
                "max_tokens",
                "tools",
                "approve",
                "max_tool_rounds",
                "approve_timeout",
                "approve_default",
            ],
        )?;
        let Some(prompt) = o.get("prompt") else {
            return Err(self.err(body.pos, "`llm` needs `prompt:`".into()));
        };
        let temperature = match o.get("temperature").map(|t| (t.pos, &t.kind)) {
            None => None,
            Some((_, Kind::Float(f))) if (0.0..=2.0).contains(f) => Some(*f),
            Some((_, Kind::Int(i))) if (0..=2).contains(i) => Some(*i as f64),
            Some((p, _)) => {
                return Err(self.err(p, "temperature must be a number from 0 to 2".into()));
            }
        };
        let history = o
            .get("history")
            .map(|h| self.boolean(h, "history"))
            .transpose()?
            .unwrap_or(false);
        self.uses_history |= history;
        Ok(LlmStep {
            prompt: self.text(prompt)?,
            system: o.get("system").map(|s| self.text(s)).transpose()?,
            history,
            model: o.get("model").map(|m| self.string(m)).transpose()?,
            temperature,
            max_tokens: o
                .get("max_tokens")
                .map(|t| self.int(t, 1, 1_000_000, "max_tokens").map(|v| v as u32))
                .transpose()?,
            agent: self.agent(&|k| o.get(k))?,
        })
    }

    fn wait(&mut self, body: &Node) -> Result<WaitSpec, FlowError> {
        match &body.kind {
            Kind::Map(m) => {
                let o = StepOpts {
                    map: m,
                    kind: "wait",
                };
                o.only(self, &["until", "for"])?;
                match (o.get("until"), o.get("for")) {
                    (Some(u), None) => Ok(WaitSpec::Until(self.text(u)?)),
                    (None, Some(f)) => Ok(WaitSpec::For(self.duration(f, "wait")?)),
                    _ => Err(self.err(
                        body.pos,
                        "`wait` takes a duration (`wait: 30s`), `for:` or `until:`".into(),
                    )),
                }
            }
            _ => Ok(WaitSpec::For(self.duration(body, "wait")?)),
        }
    }

    fn http(&mut self, body: &Node) -> Result<HttpStep, FlowError> {
        let Kind::Map(m) = &body.kind else {
            return Ok(HttpStep {
                method: "GET".into(),
                url: self.url(body)?,
                headers: Vec::new(),
                body: None,
                timeout: Duration::from_secs(30),
            });
        };
        let o = StepOpts {
            map: m,
            kind: "http",
        };
        o.only(self, &["method", "url", "headers", "body", "timeout"])?;
        let method = match o.get("method") {
            Some(n) => {
                let s = self.string(n)?.to_ascii_uppercase();
                if !["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"].contains(&s.as_str()) {
                    return Err(self.err(
                        n.pos,
                        format!("method `{s}` must be GET, POST, PUT, PATCH, DELETE or HEAD"),
                    ));
                }
                s
            }
            None => "GET".into(),
        };
        let Some(url) = o.get("url") else {
            return Err(self.err(body.pos, "`http` needs `url:`".into()));
        };
        let mut headers = Vec::new();
        if let Some(h) = o.get("headers") {
            let Kind::Map(hm) = &h.kind else {
                return Err(self.err(h.pos, "headers must be a mapping".into()));
            };
            for (k, _, v) in hm {
                headers.push((k.clone(), self.text(v)?));
            }
        }
        Ok(HttpStep {
            method,
            url: self.url(url)?,
            headers,
            body: o.get("body").map(|b| self.value(b)).transpose()?,
            timeout: o
                .get("timeout")
                .map(|t| self.duration(t, "timeout"))
                .transpose()?
                .unwrap_or(Duration::from_secs(30)),
        })
    }
}
