//! The flows the gateway knows: the current version of each bundle, and every version by
//! hash (runs are pinned to the hash they started with).
//!
//! Owns loading a flows directory (or the embedded examples when it does not exist) and the
//! in-memory maps. It does not persist anything: the caller stores each version it registers.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, RwLock};

use super::{Flow, FlowError, parse};

/// Example flows compiled into the binary, used when the flows directory does not exist.
pub(crate) const EMBEDDED: &[(&str, &str)] = &[
    ("echo", include_str!("../../../flows/echo.yaml")),
    ("ask", include_str!("../../../flows/ask.yaml")),
    ("approval", include_str!("../../../flows/approval.yaml")),
    ("chat", include_str!("../../../flows/chat.yaml")),
    ("agent", include_str!("../../../flows/agent.yaml")),
    ("release", include_str!("../../../flows/release.yaml")),
];

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("cannot read flows directory {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Flow(#[from] FlowError),
}

/// A compiled flow plus its per-bundle version number.
#[derive(Debug, Clone)]
pub(crate) struct Versioned {
    pub(crate) flow: Arc<Flow>,
    pub(crate) version: u32,
}

#[derive(Default)]
struct Maps {
    current: HashMap<String, Versioned>,
    by_hash: HashMap<String, Arc<Flow>>,
}

/// Thread-safe registry; reads are cheap (a read lock and an `Arc` clone, never held across `.await`).
#[derive(Default, Clone)]
pub(crate) struct Registry {
    maps: Arc<RwLock<Maps>>,
}

impl Registry {
    pub(crate) fn current(&self, bundle_id: &str) -> Option<Versioned> {
        self.read().current.get(bundle_id).cloned()
    }

    pub(crate) fn by_hash(&self, hash: &str) -> Option<Arc<Flow>> {
        self.read().by_hash.get(hash).cloned()
    }

    /// Every current bundle, sorted by id.
    pub(crate) fn list(&self) -> Vec<Versioned> {
        let mut v: Vec<_> = self.read().current.values().cloned().collect();
        v.sort_by(|a, b| a.flow.bundle_id.cmp(&b.flow.bundle_id));
        v
    }

    /// Makes `flow` (with its stored version number) the current version of its bundle.
    pub(crate) fn set_current(&self, flow: Arc<Flow>, version: u32) {
        let mut m = self.write();
        m.by_hash.insert(flow.hash.clone(), flow.clone());
        m.current
            .insert(flow.bundle_id.clone(), Versioned { flow, version });
    }

    /// Remembers an older version (a run pinned to it may still be in flight).
    pub(crate) fn add_version(&self, flow: Arc<Flow>) {
        self.write().by_hash.insert(flow.hash.clone(), flow);
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Maps> {
        self.maps.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Maps> {
        self.maps.write().unwrap_or_else(|p| p.into_inner())
    }
}

/// Compiles every `*.yaml`/`*.yml` file of `dir`, or the embedded examples when `dir` does not
/// exist. Any broken file fails the whole load (with its file, line and column).
pub(crate) fn load_dir(dir: &Path) -> Result<Vec<Flow>, RegistryError> {
    if !dir.exists() {
        return EMBEDDED
            .iter()
            .map(|(id, src)| Ok(parse::compile(&format!("{id}.yaml (embedded)"), id, src)?))
            .collect();
    }
    let io = |source| RegistryError::Io {
        path: dir.display().to_string(),
        source,
    };
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .map_err(io)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
        .collect();
    paths.sort();
    paths.iter().map(|p| compile_file(p)).collect()
}

/// Compiles one flow file (the bundle id defaults to the file name without extension).
/// A file over [`yaml::MAX_FLOW_BYTES`] is refused before it is read.
pub fn compile_file(path: &Path) -> Result<Flow, RegistryError> {
    use std::io::Read;
    let io = |source| RegistryError::Io {
        path: path.display().to_string(),
        source,
    };
    let limit = super::yaml::MAX_FLOW_BYTES as u64;
    let mut src = String::new();
    std::fs::File::open(path)
        .map_err(io)?
        .take(limit + 1)
        .read_to_string(&mut src)
        .map_err(io)?;
    if src.len() as u64 > limit {
        return Err(RegistryError::Flow(super::FlowError {
            file: path.display().to_string(),
            line: 1,
            column: 1,
            message: format!("the file is larger than {limit} bytes, the most a flow file may be"),
        }));
    }
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("flow");
    Ok(parse::compile(&path.display().to_string(), stem, &src)?)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_missing_flows_dir_means_the_embedded_examples() {
        let flows =
            super::load_dir(std::path::Path::new("/nonexistent/switchboard/flows")).unwrap();
        let ids: Vec<_> = flows.iter().map(|f| f.bundle_id.as_str()).collect();
        assert_eq!(ids, ["echo", "ask", "approval", "chat", "agent", "release"]);
    }

    #[test]
    fn a_broken_file_fails_the_load_with_its_position() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ok.yaml"), "steps:\n  - say: hi\n").unwrap();
        std::fs::write(
            dir.path().join("bad.yaml"),
            "steps:\n  - say: hi\n  - nope: 1\n",
        )
        .unwrap();
        let e = super::load_dir(dir.path()).unwrap_err().to_string();
        assert!(e.contains("bad.yaml:3:5"), "{e}");
    }
}
