//! A loopback OpenTelemetry collector: accepts OTLP/HTTP trace exports (`POST /v1/traces`,
//! protobuf `ExportTraceServiceRequest`, decoded with the official generated types) and
//! keeps every span, so a test can check names, ids and parent links as a real collector
//! would receive them. A body that does not decode gets a 400, like a collector's.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use prost::Message;

/// A span as the collector got it (ids in lower-case hex; `parent` empty for a root).
#[derive(Debug, Clone)]
pub struct Span {
    pub trace_id: String,
    pub span_id: String,
    pub parent: String,
    pub name: String,
    /// `SpanKind` as its protobuf number (1 internal, 2 server, 3 client).
    pub kind: i32,
    /// `Status.code` (0 unset, 1 ok, 2 error).
    pub status: i32,
    pub start_ns: u64,
    pub end_ns: u64,
    pub attributes: BTreeMap<String, String>,
    /// The resource's `service.name`.
    pub service: String,
}

#[derive(Clone, Default)]
pub struct Sink {
    spans: Arc<Mutex<Vec<Span>>>,
}

impl Sink {
    pub fn spans(&self) -> Vec<Span> {
        self.spans.lock().expect("lock").clone()
    }

    /// Waits (30 s at most) until `done` holds for the spans received.
    pub async fn wait(&self, what: &str, done: impl Fn(&[Span]) -> bool) -> Vec<Span> {
        crate::wait::eventually(30, what, || async {
            let s = self.spans();
            done(&s).then_some(s)
        })
        .await
    }
}

/// Starts the collector; returns its base URL (`http://127.0.0.1:PORT`) for
/// `SWITCHBOARD_OTLP_ENDPOINT`.
pub async fn start() -> (String, Sink) {
    let sink = Sink::default();
    let s = sink.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let s = s.clone();
            async move { receive(&s, &headers, &body) }
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = l.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(l, app).await });
    (format!("http://{addr}"), sink)
}

fn receive(sink: &Sink, headers: &HeaderMap, body: &[u8]) -> (StatusCode, Vec<u8>) {
    let protobuf = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("application/x-protobuf"));
    let Ok(req) = ExportTraceServiceRequest::decode(body)
        .map_err(|_| ())
        .and_then(|r| if protobuf { Ok(r) } else { Err(()) })
    else {
        return (StatusCode::BAD_REQUEST, Vec::new());
    };
    let mut got = Vec::new();
    for rs in req.resource_spans {
        let service = rs
            .resource
            .iter()
            .flat_map(|r| r.attributes.iter())
            .find(|kv| kv.key == "service.name")
            .map(|kv| text(kv.value.as_ref().and_then(|v| v.value.as_ref())))
            .unwrap_or_default();
        for ss in rs.scope_spans {
            for sp in ss.spans {
                got.push(Span {
                    trace_id: hex(&sp.trace_id),
                    span_id: hex(&sp.span_id),
                    parent: hex(&sp.parent_span_id),
                    name: sp.name,
                    kind: sp.kind,
                    status: sp.status.map(|s| s.code).unwrap_or_default(),
                    start_ns: sp.start_time_unix_nano,
                    end_ns: sp.end_time_unix_nano,
                    attributes: sp
                        .attributes
                        .iter()
                        .map(|kv| {
                            (
                                kv.key.clone(),
                                text(kv.value.as_ref().and_then(|v| v.value.as_ref())),
                            )
                        })
                        .collect(),
                    service: service.clone(),
                });
            }
        }
    }
    sink.spans.lock().expect("lock").extend(got);
    (
        StatusCode::OK,
        ExportTraceServiceResponse::default().encode_to_vec(),
    )
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn text(v: Option<&AnyValue>) -> String {
    match v {
        Some(AnyValue::StringValue(s)) => s.clone(),
        Some(AnyValue::IntValue(i)) => i.to_string(),
        Some(AnyValue::BoolValue(b)) => b.to_string(),
        Some(AnyValue::DoubleValue(d)) => d.to_string(),
        _ => String::new(),
    }
}
