//! Watches the mailbox over IMAP (async-imap): connect (plain, STARTTLS or TLS), log in,
//! select, then handle every unseen message above the last UID handled, oldest first, and
//! wait for more with IDLE (renewed every `idle_timeout`) or by polling when the server
//! lacks IDLE. A message is marked `\Seen`, and the last UID stored, only after
//! [`super::inbound`] handled it (the gateway accepted its request, or it was refused for
//! good). A changed UIDVALIDITY starts the count again. A dropped connection or a gateway
//! outage reconnects with back-off, then catches up before idling again.

use std::sync::Arc;
use std::time::Duration;

use futures::TryStreamExt;
use protocol::backoff::Backoff;
use tokio::io::{AsyncRead, AsyncWrite};

use super::inbound::{self, Handled};
use super::{Ctx, EmailError, Server, Tls};

const UIDVALIDITY: &str = "imap_uidvalidity";
const LAST_UID: &str = "imap_last_uid";
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// Any stream IMAP can run over (TCP, or TLS over TCP).
pub(crate) trait Io: AsyncRead + AsyncWrite + Unpin + Send + std::fmt::Debug {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + std::fmt::Debug> Io for T {}

type Session = async_imap::Session<Box<dyn Io>>;

/// Watches the mailbox forever.
pub(crate) async fn watch(ctx: Arc<Ctx>) {
    let mut backoff = crate::reconnect::backoff();
    loop {
        if let Err(e) = session(&ctx, &mut backoff).await {
            tracing::warn!(error = %e, "email bridge: IMAP session ended; reconnecting")
        }
        backoff.wait().await;
    }
}

/// One IMAP session: catch up, then wait for new mail, until something breaks.
async fn session(ctx: &Ctx, backoff: &mut Backoff) -> Result<(), EmailError> {
    let mut s = connect(&ctx.cfg.imap).await?;
    let mailbox = s.select(&ctx.cfg.mailbox).await?;
    let validity = u64::from(mailbox.uid_validity.unwrap_or(0));
    if ctx.state.meta_u64(UIDVALIDITY).await? != validity {
        tracing::info!(
            validity,
            "email bridge: new UIDVALIDITY; starting the UID count again"
        );
        ctx.state.set_meta(LAST_UID, "0".into()).await?;
        ctx.state
            .set_meta(UIDVALIDITY, validity.to_string())
            .await?;
    }
    let idle = s.capabilities().await?.has_str("IDLE");
    tracing::info!(mailbox = %ctx.cfg.mailbox, idle, "email bridge: watching the mailbox");
    loop {
        catch_up(ctx, &mut s).await?;
        backoff.reset();
        if idle {
            let mut h = s.idle();
            h.init().await?;
            let (wait, _stop) = h.wait_with_timeout(ctx.cfg.idle_timeout);
            let res = wait.await;
            s = h.done().await?;
            res?;
        } else {
            tokio::time::sleep(ctx.cfg.poll_every).await;
            s.noop().await?;
        }
    }
}

/// Handles every unseen message above the last UID handled, oldest first.
async fn catch_up(ctx: &Ctx, s: &mut Session) -> Result<(), EmailError> {
    let last = ctx.state.meta_u64(LAST_UID).await?;
    let found = s.uid_search(format!("UID {}:* UNSEEN", last + 1)).await?;
    let mut uids: Vec<u32> = found.into_iter().filter(|u| u64::from(*u) > last).collect();
    uids.sort_unstable();
    for uid in uids {
        let raw = fetch(s, uid).await?;
        let Some(raw) = raw else {
            continue;
        };
        match inbound::handle(ctx, &raw).await {
            Handled::Done => {
                s.uid_store(uid.to_string(), "+FLAGS (\\Seen)")
                    .await?
                    .try_collect::<Vec<_>>()
                    .await?;
                ctx.state.set_meta(LAST_UID, uid.to_string()).await?;
                ctx.outbox.notify_one();
            }
            Handled::Retry(why) => {
                return Err(EmailError::State(format!(
                    "message {uid} not handled yet ({why}); trying again"
                )));
            }
        }
    }
    Ok(())
}

async fn fetch(s: &mut Session, uid: u32) -> Result<Option<Vec<u8>>, EmailError> {
    let fetched: Vec<_> = s
        .uid_fetch(uid.to_string(), "(UID BODY.PEEK[])")
        .await?
        .try_collect()
        .await?;
    Ok(fetched
        .iter()
        .find(|f| f.uid == Some(uid))
        .and_then(|f| f.body())
        .map(<[u8]>::to_vec))
}

/// Connects and logs in.
pub(crate) async fn connect(server: &Server) -> Result<Session, EmailError> {
    let addr = (server.host.as_str(), server.port);
    let tcp = tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(addr))
        .await
        .map_err(|_| {
            EmailError::Config(format!("IMAP {}:{} timed out", server.host, server.port))
        })??;
    let stream: Box<dyn Io> = match server.tls {
        Tls::Tls => Box::new(tls(&server.host, tcp).await?),
        Tls::None | Tls::StartTls => Box::new(tcp),
    };
    let mut client = async_imap::Client::new(stream);
    let _greeting = client.read_response().await?;
    if server.tls == Tls::StartTls {
        client.run_command_and_check_ok("STARTTLS", None).await?;
        let plain = client.into_inner();
        client = async_imap::Client::new(Box::new(tls(&server.host, plain).await?));
    }
    let user = server.user.clone().unwrap_or_default();
    let pass = server.password.clone().unwrap_or_default();
    client.login(user, pass).await.map_err(|(e, _)| e.into())
}

async fn tls<S: Io + 'static>(
    host: &str,
    io: S,
) -> Result<tokio_rustls::client::TlsStream<S>, EmailError> {
    use rustls_platform_verifier::BuilderVerifierExt;
    use tokio_rustls::rustls;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_platform_verifier())
        .map_err(|e| EmailError::Config(format!("TLS setup: {e}")))?
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from(host.to_owned())
        .map_err(|e| EmailError::Config(format!("`{host}` is not a TLS server name: {e}")))?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    Ok(connector.connect(name, io).await?)
}
