//! What a flow's tool references are checked against when it loads: the configured MCP
//! servers and the tools they listed, and the known flows.

use super::Hub;
use crate::flows::tools::ToolCatalog;
use crate::flows::{Flow, Registry, ToolRef};

pub(crate) struct Catalog<'a> {
    pub(crate) hub: &'a Hub,
    pub(crate) registry: &'a Registry,
    /// Flows loaded together with the one checked (a directory), not yet registered.
    pub(crate) loading: &'a [String],
}

impl ToolCatalog for Catalog<'_> {
    fn has_server(&self, server: &str) -> bool {
        self.hub.has(server)
    }

    fn tool_names(&self, server: &str) -> Option<Vec<String>> {
        self.hub.cached_names(server)
    }

    fn has_flow(&self, bundle: &str) -> bool {
        self.registry.current(bundle).is_some() || self.loading.iter().any(|b| b == bundle)
    }
}

/// Lists the tools of every configured server `flow` names a tool of, so that the check
/// sees them (a server that cannot start leaves its tools unchecked until a run calls them;
/// that is logged).
pub(crate) async fn list_named(hub: &Hub, flow: &Flow) {
    let mut servers: Vec<&str> = flow
        .tool_refs
        .iter()
        .filter_map(|r| match &r.tool {
            ToolRef::Mcp {
                server,
                tool: Some(_),
            } if hub.has(server) => Some(server.as_str()),
            _ => None,
        })
        .collect();
    servers.sort_unstable();
    servers.dedup();
    for s in servers {
        if let Err(e) = hub.tools(s).await {
            tracing::warn!(error = %e, flow = %flow.bundle_id, "cannot check the flow's tools now");
        }
    }
}
