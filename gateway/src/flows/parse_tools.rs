//! Compiles the tool options of an `llm` step (`tools`, `approve`, `max_tool_rounds`,
//! `approve_timeout`, `approve_default`); the types live in `flows::tools`.

use super::*;
use crate::flows::tools::{AgentSpec, Approve, DEFAULT_TOOL_ROUNDS, RefAt, ToolRef};

const MAX_TOOL_ROUNDS: i64 = 100;

impl Cx<'_> {
    /// `tools:`, `approve:`, `max_tool_rounds:`, `approve_timeout:`, `approve_default:` of
    /// an `llm` mapping; `None` when the step names no tools.
    pub(super) fn agent<'a>(
        &mut self,
        get: &dyn Fn(&str) -> Option<&'a Node>,
    ) -> Result<Option<AgentSpec>, FlowError> {
        let Some(tools_node) = get("tools") else {
            for k in [
                "approve",
                "max_tool_rounds",
                "approve_timeout",
                "approve_default",
            ] {
                if let Some(n) = get(k) {
                    return Err(self.err(n.pos, format!("`{k}` needs `tools:`")));
                }
            }
            return Ok(None);
        };
        let tools = self.tool_list(tools_node, "tools")?;
        if tools.is_empty() {
            return Err(self.err(tools_node.pos, "`tools` is an empty list".into()));
        }
        let approve = match get("approve") {
            None => Approve::None,
            Some(n) if matches!(&n.kind, Kind::Str(s) if s == "all") => Approve::All,
            Some(n) => {
                let patterns = self.tool_list(n, "approve")?;
                for (p, item) in patterns.iter().zip(items(n)) {
                    if !tools.iter().any(|t| t.covers(p) || p.covers(t)) {
                        return Err(self.err(
                            item.pos,
                            format!("`approve` names `{p}`, which is not among `tools`"),
                        ));
                    }
                }
                Approve::Some(patterns)
            }
        };
        let max_rounds = get("max_tool_rounds")
            .map(|n| self.int(n, 1, MAX_TOOL_ROUNDS, "max_tool_rounds"))
            .transpose()?
            .map_or(DEFAULT_TOOL_ROUNDS, |v| v as u32);
        let approve_timeout = get("approve_timeout")
            .map(|n| self.duration(n, "approve_timeout"))
            .transpose()?;
        let approve_default = match get("approve_default") {
            None => None,
            Some(n) => match self.string(n)?.as_str() {
                d @ ("allow" | "deny") => Some(d.to_owned()),
                other => {
                    return Err(self.err(
                        n.pos,
                        format!("approve_default `{other}` must be allow or deny"),
                    ));
                }
            },
        };
        Ok(Some(AgentSpec {
            tools,
            approve,
            max_rounds,
            approve_timeout,
            approve_default,
        }))
    }

    fn tool_list(&mut self, n: &Node, what: &str) -> Result<Vec<ToolRef>, FlowError> {
        let Kind::Seq(list) = &n.kind else {
            return Err(self.err(
                n.pos,
                format!("`{what}` is a list like [\"mcp:calc/add\", \"flow:lookup\"]"),
            ));
        };
        let mut out = Vec::with_capacity(list.len());
        for item in list {
            let s = self.string(item)?;
            let tool = ToolRef::parse(&s).map_err(|m| self.err(item.pos, m))?;
            if what == "tools" {
                self.tool_refs.push(RefAt {
                    tool: tool.clone(),
                    line: item.pos.line,
                    column: item.pos.column,
                });
            }
            out.push(tool);
        }
        Ok(out)
    }
}

fn items(n: &Node) -> &[Node] {
    match &n.kind {
        Kind::Seq(list) => list,
        _ => &[],
    }
}
