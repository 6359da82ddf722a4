//! Where the time of an SSE catch-up goes on the client: raw bytes, framing, decoding.
use futures::StreamExt;
use std::time::Instant;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut a = std::env::args().skip(1);
    let (url, token, run) = (
        a.next().unwrap_or_default(),
        a.next().unwrap_or_default(),
        a.next().unwrap_or_default(),
    );
    let http = reqwest::Client::new();
    let stream_url = format!("{url}/api/gateway/runs/{run}/ledger/stream?after=0");
    let t = Instant::now();
    let r = http.get(&stream_url).bearer_auth(&token).send().await?;
    let mut body = r.bytes_stream();
    let (mut n, mut chunks, mut parser, mut events) =
        (0usize, 0usize, protocol::sse::Parser::default(), 0usize);
    let mut raw = Vec::new();
    while let Some(b) = body.next().await {
        let b = b?;
        n += b.len();
        chunks += 1;
        raw.push(b);
    }
    let t_raw = t.elapsed();
    let t2 = Instant::now();
    let mut evs = Vec::new();
    for b in &raw {
        let e = parser.feed(b);
        events += e.len();
        evs.extend(e);
    }
    let t_frame = t2.elapsed();
    let t3 = Instant::now();
    let mut ok = 0;
    for e in &evs {
        if e.event == "step" && serde_json::from_str::<protocol::StepEvent>(&e.data).is_ok() {
            ok += 1;
        }
    }
    println!(
        "{n} bytes in {chunks} chunks: read {t_raw:?}; framing {events} events {t_frame:?}; decoding {ok} {:?}",
        t3.elapsed()
    );
    let c = protocol::Client::new(&url, Some(token))?;
    let t4 = Instant::now();
    let mut s = Box::pin(c.stream_run(&run, 0).await?);
    let mut k = 0;
    while let Some(i) = s.next().await {
        if let protocol::StreamItem::Done = i? {
            break;
        }
        k += 1;
    }
    println!(
        "protocol::Client::stream_run: {k} items in {:?}",
        t4.elapsed()
    );
    Ok(())
}
