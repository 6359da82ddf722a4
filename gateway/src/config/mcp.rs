//! `[mcp.servers.NAME]` in the config file: the MCP servers `llm` steps may call, over
//! stdio (`command`, `env`) or streamable HTTP (`url`, `headers`). `${VAR}` in `env` and
//! `headers` values is read from the environment at start, so secrets stay out of the file.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use crate::mcp::{McpConfig, ServerConfig, Transport};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileMcp {
    #[serde(default)]
    servers: BTreeMap<String, FileServer>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileServer {
    command: Option<Vec<String>>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    url: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    /// Longest a tool call may take (default 60s).
    timeout: Option<String>,
}

impl FileMcp {
    pub(crate) fn resolve(self, problems: &mut Vec<String>) -> McpConfig {
        let mut servers = BTreeMap::new();
        for (name, s) in self.servers {
            let at = format!("[mcp.servers.{name}]");
            let valid = !name.is_empty()
                && name.len() <= 64
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c));
            if !valid {
                problems.push(format!(
                    "{at}: a server name is 1-64 letters, digits, `_`, `-` or `.`"
                ));
                continue;
            }
            let transport = match (s.command, s.url) {
                (Some(cmd), None) if !cmd.is_empty() && !cmd[0].is_empty() => Transport::Stdio {
                    command: cmd,
                    env: expand_all(&s.env, &at, "env", problems),
                },
                (None, Some(url)) => match url::Url::parse(&url) {
                    Ok(u) if matches!(u.scheme(), "http" | "https") => Transport::Http {
                        url,
                        headers: expand_all(&s.headers, &at, "headers", problems),
                    },
                    _ => {
                        problems.push(format!(
                            "{at}: url `{url}` is not an http(s) URL (e.g. https://mcp.example.com/mcp)"
                        ));
                        continue;
                    }
                },
                (Some(_), Some(_)) => {
                    problems.push(format!(
                        "{at}: give `command` (stdio) or `url` (streamable HTTP), not both"
                    ));
                    continue;
                }
                _ => {
                    problems.push(format!(
                        "{at}: needs `command = [\"program\", \"arg\"]` (stdio) or `url = \"https://…\"` (streamable HTTP)"
                    ));
                    continue;
                }
            };
            let timeout = match s.timeout.as_deref().map(humantime::parse_duration) {
                None => Duration::from_secs(60),
                Some(Ok(d)) if !d.is_zero() => d,
                Some(_) => {
                    problems.push(format!("{at}: timeout must be a duration like 60s or 2m"));
                    continue;
                }
            };
            servers.insert(name, ServerConfig { transport, timeout });
        }
        McpConfig { servers }
    }
}

fn expand_all(
    m: &BTreeMap<String, String>,
    at: &str,
    what: &str,
    problems: &mut Vec<String>,
) -> Vec<(String, String)> {
    m.iter()
        .map(|(k, v)| match expand(v) {
            Ok(v) => (k.clone(), v),
            Err(var) => {
                problems.push(format!(
                    "{at}: {what}.{k} uses ${{{var}}}, which is not set in the environment"
                ));
                (k.clone(), String::new())
            }
        })
        .collect()
}

/// Replaces each `${NAME}` with that environment variable; the name of a missing one, else.
fn expand(v: &str) -> Result<String, String> {
    let mut out = String::with_capacity(v.len());
    let mut rest = v;
    while let Some(i) = rest.find("${") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        let Some(end) = after.find('}') else {
            out.push_str(&rest[i..]);
            return Ok(out);
        };
        let name = &after[..end];
        out.push_str(&std::env::var(name).map_err(|_| name.to_owned())?);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn variables_expand_and_a_missing_one_is_named() {
        // PATH is set in every test environment.
        let path = std::env::var("PATH").unwrap();
        assert_eq!(super::expand("a ${PATH} b").unwrap(), format!("a {path} b"));
        assert_eq!(super::expand("plain").unwrap(), "plain");
        assert_eq!(
            super::expand("Bearer ${SWITCHBOARD_SURELY_UNSET_42}").unwrap_err(),
            "SWITCHBOARD_SURELY_UNSET_42"
        );
    }

    #[test]
    fn a_server_needs_exactly_one_transport() {
        let f: super::FileMcp = toml::from_str(
            "[servers.a]\ncommand = [\"x\"]\nurl = \"http://h/mcp\"\n[servers.b]\n[servers.c]\nurl = \"ftp://h\"\n[servers.ok]\ncommand = [\"python3\", \"s.py\"]\ntimeout = \"5s\"\n",
        )
        .unwrap();
        let mut problems = Vec::new();
        let cfg = f.resolve(&mut problems);
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[0].contains("not both"), "{problems:?}");
        assert!(cfg.servers.contains_key("ok"));
        assert_eq!(cfg.servers["ok"].timeout, std::time::Duration::from_secs(5));
    }
}
