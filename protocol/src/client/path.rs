//! [`ApiPath`]: how a client names a route, with every id encoded as one path segment.

use super::ClientError;

/// A path of the API: a constant route plus ids, each id percent-encoded as one path
/// segment (so an id can never climb to another route: `..`, `/`, `%2e` stay inside it).
///
/// ```
/// let p = protocol::client::ApiPath::new("api/gateway/devices").id("a/../b");
/// assert_eq!(p.to_string(), "api/gateway/devices/a%2F..%2Fb");
/// ```
#[derive(Debug, Clone)]
pub struct ApiPath {
    route: &'static str,
    parts: Vec<Part>,
    query: Vec<(&'static str, String)>,
}

#[derive(Debug, Clone)]
enum Part {
    /// A segment from data: encoded, never interpreted.
    Id(String),
    /// A constant route part (`ledger/stream`).
    Fixed(&'static str),
}

impl ApiPath {
    /// `route` is a constant such as `api/gateway/runs` (it may end in a constant `?query`).
    pub fn new(route: &'static str) -> Self {
        Self {
            route,
            parts: Vec::new(),
            query: Vec::new(),
        }
    }

    /// Appends one path segment taken from data (encoded; never interpreted).
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.parts.push(Part::Id(id.into()));
        self
    }

    /// Appends a constant route part after the ids (`/ledger`, `/stream`).
    pub fn then(mut self, part: &'static str) -> Self {
        self.parts.push(Part::Fixed(part));
        self
    }

    /// Adds a query parameter (encoded).
    pub fn query(mut self, key: &'static str, value: impl ToString) -> Self {
        self.query.push((key, value.to_string()));
        self
    }

    /// The URL of this path under `base` (whose path ends with `/`). An id that is empty,
    /// `.` or `..` is refused: the URL standard would drop it and so change the route.
    pub(crate) fn url(&self, base: &url::Url) -> Result<url::Url, ClientError> {
        let (route, fixed_query) = match self.route.split_once('?') {
            Some((r, q)) => (r, Some(q)),
            None => (self.route, None),
        };
        let mut url = base.clone();
        {
            let mut segs = url
                .path_segments_mut()
                .map_err(|()| ClientError::BadPath("the gateway URL cannot be a base".into()))?;
            segs.pop_if_empty();
            segs.extend(route.split('/').filter(|s| !s.is_empty()));
            for part in &self.parts {
                match part {
                    Part::Fixed(f) => {
                        segs.extend(f.split('/').filter(|s| !s.is_empty()));
                    }
                    Part::Id(id) if id.is_empty() || id == "." || id == ".." => {
                        return Err(ClientError::BadPath(format!(
                            "`{id}` is not a valid id in a URL path"
                        )));
                    }
                    Part::Id(id) => {
                        segs.push(id);
                    }
                }
            }
        }
        url.set_query(fixed_query);
        if !self.query.is_empty() {
            let mut q = url.query_pairs_mut();
            for (k, v) in &self.query {
                q.append_pair(k, v);
            }
        }
        Ok(url)
    }
}

impl From<&'static str> for ApiPath {
    fn from(route: &'static str) -> Self {
        Self::new(route)
    }
}

impl std::fmt::Display for ApiPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Ok(base) = url::Url::parse("http://x/") else {
            return f.write_str(self.route);
        };
        match self.url(&base) {
            Ok(url) => f.write_str(url.as_str().trim_start_matches("http://x/")),
            Err(e) => write!(f, "{} ({e})", self.route),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Client;

    fn url(p: ApiPath) -> String {
        let c = Client::new("http://127.0.0.1:9/base", None).unwrap_or_else(|e| panic!("{e}"));
        c.url(p)
            .map(|u| u.to_string())
            .unwrap_or_else(|e| e.to_string())
    }

    #[test]
    fn ids_are_encoded_as_one_segment_and_cannot_climb() {
        assert_eq!(
            url(ApiPath::new("api/gateway/devices").id("%2e%2e/webhooks/x.x")),
            "http://127.0.0.1:9/base/api/gateway/devices/%252e%252e%2Fwebhooks%2Fx.x"
        );
        assert_eq!(
            url(ApiPath::new("api/gateway/runs")
                .id("a b?c#d")
                .then("ledger")
                .query("after", 3)),
            "http://127.0.0.1:9/base/api/gateway/runs/a%20b%3Fc%23d/ledger?after=3"
        );
        for bad in ["", ".", ".."] {
            assert!(url(ApiPath::new("api/gateway/keys").id(bad)).contains("not a valid id"));
        }
        assert_eq!(
            url("api/gateway/schedules?limit=200".into()),
            "http://127.0.0.1:9/base/api/gateway/schedules?limit=200"
        );
    }
}
