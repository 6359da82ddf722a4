//! The tools of an `llm` step: `tools:` (MCP tools and flows the model may call),
//! `approve:` (the calls that wait for a person first) and `max_tool_rounds:`.
//!
//! Owns the reference syntax (`mcp:<server>/<tool>`, `mcp:<server>/*`, `flow:<bundle>`),
//! matching a concrete tool against a pattern, and the check of a flow's references
//! against what the gateway knows (configured MCP servers, their tools, other flows).
//! It starts nothing and lists nothing itself: the caller passes a [`ToolCatalog`].

use std::fmt;
use std::time::Duration;

use super::{Flow, FlowError};

/// Tool rounds an `llm` step allows unless `max_tool_rounds` says otherwise.
pub(crate) const DEFAULT_TOOL_ROUNDS: u32 = 8;

/// A tool reference, or a pattern of them (`mcp:files/*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ToolRef {
    /// A tool of a configured MCP server; `None` is every tool of that server.
    Mcp {
        server: String,
        tool: Option<String>,
    },
    /// Another flow, run as a child run.
    Flow(String),
}

impl fmt::Display for ToolRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Mcp { server, tool } => {
                write!(f, "mcp:{server}/{}", tool.as_deref().unwrap_or("*"))
            }
            Self::Flow(b) => write!(f, "flow:{b}"),
        }
    }
}

impl ToolRef {
    pub(crate) fn parse(s: &str) -> Result<Self, String> {
        let bad_name = |n: &str| {
            n.is_empty()
                || n.len() > 128
                || !n
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
        };
        if let Some(rest) = s.strip_prefix("mcp:") {
            let Some((server, tool)) = rest.split_once('/') else {
                return Err(format!(
                    "`{s}` names no tool: write `mcp:<server>/<tool>` or `mcp:<server>/*`"
                ));
            };
            if bad_name(server) {
                return Err(format!("`{server}` is not an MCP server name"));
            }
            let tool = match tool {
                "*" => None,
                t if bad_name(t) => return Err(format!("`{t}` is not an MCP tool name")),
                t => Some(t.to_owned()),
            };
            return Ok(Self::Mcp {
                server: server.to_owned(),
                tool,
            });
        }
        if let Some(bundle) = s.strip_prefix("flow:") {
            if bad_name(bundle) {
                return Err(format!("`{bundle}` is not a flow id"));
            }
            return Ok(Self::Flow(bundle.to_owned()));
        }
        Err(format!(
            "`{s}` is not a tool: write `mcp:<server>/<tool>`, `mcp:<server>/*` or `flow:<flow id>`"
        ))
    }

    /// Whether this pattern covers `other` (a concrete tool or a narrower pattern).
    pub(crate) fn covers(&self, other: &ToolRef) -> bool {
        match (self, other) {
            (
                Self::Mcp {
                    server: a,
                    tool: ta,
                },
                Self::Mcp {
                    server: b,
                    tool: tb,
                },
            ) => a == b && (ta.is_none() || ta == tb),
            (Self::Flow(a), Self::Flow(b)) => a == b,
            _ => false,
        }
    }
}

/// Which calls wait for a person before they run.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) enum Approve {
    #[default]
    None,
    All,
    Some(Vec<ToolRef>),
}

impl Approve {
    pub(crate) fn needs(&self, tool: &ToolRef) -> bool {
        match self {
            Self::None => false,
            Self::All => true,
            Self::Some(p) => p.iter().any(|p| p.covers(tool)),
        }
    }
}

/// The tool half of an `llm` step.
#[derive(Debug, Clone)]
pub(crate) struct AgentSpec {
    pub(crate) tools: Vec<ToolRef>,
    pub(crate) approve: Approve,
    pub(crate) max_rounds: u32,
    /// How long an approval waits, and the answer it then takes (`allow` or `deny`).
    pub(crate) approve_timeout: Option<Duration>,
    pub(crate) approve_default: Option<String>,
}

impl AgentSpec {
    /// The pattern of `tools:` that covers `tool`, if any.
    pub(crate) fn allows(&self, tool: &ToolRef) -> bool {
        self.tools.iter().any(|p| p.covers(tool))
    }
}

/// A tool reference of a flow and where it is written (for the load-time check).
#[derive(Debug, Clone)]
pub(crate) struct RefAt {
    pub(crate) tool: ToolRef,
    pub(crate) line: usize,
    pub(crate) column: usize,
}

/// What the gateway can tell about tools when it loads a flow.
pub(crate) trait ToolCatalog {
    /// Whether an MCP server of this name is configured.
    fn has_server(&self, server: &str) -> bool;
    /// The server's tool names when known (`None`: it could not be asked now).
    fn tool_names(&self, server: &str) -> Option<Vec<String>>;
    /// Whether a flow of this id exists.
    fn has_flow(&self, bundle: &str) -> bool;
}

impl Flow {
    /// Checks every tool this flow names against `catalog`: the first unknown server, tool
    /// or flow is an error at its line and column.
    pub(crate) fn check_tools(&self, catalog: &dyn ToolCatalog) -> Result<(), FlowError> {
        for r in &self.tool_refs {
            let err = |message: String| FlowError {
                file: self.file.clone(),
                line: r.line,
                column: r.column,
                message,
            };
            match &r.tool {
                ToolRef::Mcp { server, tool } => {
                    if !catalog.has_server(server) {
                        return Err(err(format!(
                            "no MCP server `{server}` is configured (add `[mcp.servers.{server}]` to the config file)"
                        )));
                    }
                    if let (Some(tool), Some(names)) = (tool, catalog.tool_names(server))
                        && !names.iter().any(|n| n == tool)
                    {
                        return Err(err(format!(
                            "MCP server `{server}` has no tool `{tool}`; it has: {}",
                            names.join(", ")
                        )));
                    }
                }
                ToolRef::Flow(b) if !catalog.has_flow(b) && *b != self.bundle_id => {
                    return Err(err(format!("no flow `{b}` to call as a tool")));
                }
                ToolRef::Flow(_) => {}
            }
        }
        Ok(())
    }
}
