//! PostgreSQL connections: opening one with the session settings the store's guarantees rest
//! on (`synchronous_commit = on`, READ COMMITTED), and migrating the schema when several
//! nodes start at once (an advisory lock makes them take turns).
//!
//! The driver is `postgres`, the blocking face of `tokio-postgres`: the store's transaction
//! code is synchronous and runs on the writer thread and on blocking reader threads for both
//! backends, so one body of SQL code serves both. Group commit gives PostgreSQL what
//! pipelining would (one commit for many writes). It must not be called on an async thread.

use super::sql::{Db, PgConn};
use super::{Result, StoreError};

/// Any fixed number: the advisory lock the migrating node holds.
const MIGRATION_LOCK: i64 = 0x5357_4254_4d49_4752;

/// Connects to `url`. Errors name the server but never the password.
///
/// TLS is used when the URL asks for it (`sslmode=require`, `verify-ca` or `verify-full`),
/// and then always verified: the server's chain against the system's roots plus the CA
/// file in `sslrootcert`, and its name against the host. Without `sslmode` (or with
/// `disable`, `allow`, `prefer`) the connection is plain, for a local socket or a private
/// network.
pub(super) fn connect(url: &str) -> Result<PgConn> {
    let shown = redact(url);
    let (cfg, tls) = parse(url)
        .map_err(|e| StoreError::Open(format!("the database URL `{shown}` is not valid: {e}")))?;
    let client = match tls {
        None => cfg.connect(postgres::NoTls),
        Some(roots) => {
            let tls = tls_connector(roots.as_deref())
                .map_err(|e| StoreError::Open(format!("database TLS for `{shown}`: {e}")))?;
            cfg.connect(tls)
        }
    };
    let mut client = client.map_err(|e| {
        StoreError::Open(format!(
            "cannot connect to PostgreSQL at `{shown}`: {}",
            with_causes(&e)
        ))
    })?;
    // A node that stops mid-transaction (a pause, a partition) must not hold its locks (the
    // runner lease's row among them) for longer than the lease lives: the server ends such a
    // session, and the node's next write reconnects and meets the fence.
    client.batch_execute(
        "SET synchronous_commit = on;
         SET default_transaction_isolation = 'read committed';
         SET idle_in_transaction_session_timeout = '3s';
         SET application_name = 'switchboard'",
    )?;
    Ok(PgConn::new(client))
}

/// An error and its causes, as one line ("error performing TLS handshake: invalid peer
/// certificate: UnknownIssuer").
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cause = c.source();
    }
    out
}

/// The driver's config, and whether to use TLS (with the extra CA file, if any). The
/// driver knows only `disable`/`prefer`/`require`, so libpq's `sslmode` and `sslrootcert`
/// are read here and taken out of the URL.
fn parse(url: &str) -> std::result::Result<(postgres::Config, Option<Option<String>>), String> {
    let mut u = url::Url::parse(url).map_err(|e| e.to_string())?;
    let (mut mode, mut root) = (None, None);
    let rest: Vec<(String, String)> = u
        .query_pairs()
        .filter_map(|(k, v)| match &*k {
            "sslmode" => {
                mode = Some(v.into_owned());
                None
            }
            "sslrootcert" => {
                root = Some(v.into_owned());
                None
            }
            _ => Some((k.into_owned(), v.into_owned())),
        })
        .collect();
    u.set_query(None);
    if !rest.is_empty() {
        u.query_pairs_mut().extend_pairs(rest);
    }
    let mut cfg: postgres::Config = u.as_str().parse().map_err(|e| format!("{e}"))?;
    let tls = match mode.as_deref() {
        None | Some("disable" | "allow" | "prefer") => None,
        Some("require" | "verify-ca" | "verify-full") => Some(root),
        Some(other) => {
            return Err(format!(
                "sslmode `{other}` is not one of disable, prefer, require, verify-ca, verify-full"
            ));
        }
    };
    cfg.ssl_mode(if tls.is_some() {
        postgres::config::SslMode::Require
    } else {
        postgres::config::SslMode::Disable
    });
    Ok((cfg, tls))
}

/// A rustls connector trusting the system's roots and the PEM file `extra`.
fn tls_connector(
    extra: Option<&str>,
) -> std::result::Result<tokio_postgres_rustls::MakeRustlsConnect, String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    if let Some(path) = extra {
        let certs = CertificateDer::pem_file_iter(path)
            .map_err(|e| format!("cannot read sslrootcert `{path}`: {e}"))?;
        for cert in certs {
            let cert = cert.map_err(|e| format!("sslrootcert `{path}`: {e}"))?;
            roots
                .add(cert)
                .map_err(|e| format!("sslrootcert `{path}`: {e}"))?;
        }
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

/// The URL with its passwords replaced (in the user part and in `password=` parameters).
pub(crate) fn redact(url: &str) -> String {
    let Ok(mut u) = url::Url::parse(url) else {
        return "(unparseable URL)".into();
    };
    if u.password().is_some() {
        let _ = u.set_password(Some("***"));
    }
    let secret = |k: &str| k.to_ascii_lowercase().contains("password");
    if u.query_pairs().any(|(k, _)| secret(&k)) {
        let pairs: Vec<(String, String)> = u
            .query_pairs()
            .map(|(k, v)| {
                let v = if secret(&k) {
                    "***".into()
                } else {
                    v.into_owned()
                };
                (k.into_owned(), v)
            })
            .collect();
        u.query_pairs_mut().clear().extend_pairs(pairs);
    }
    u.to_string()
}

/// Applies the migrations this database has not seen, in one transaction under a lock.
pub(super) fn migrate(conn: &mut PgConn, migrations: &[&str]) -> Result<()> {
    let db = Db::Pg(conn);
    db.execute_batch("BEGIN")?;
    let done = (|| -> Result<()> {
        db.query_row("SELECT pg_advisory_xact_lock(?1)", [MIGRATION_LOCK], |_| {
            Ok(())
        })?;
        db.execute_batch(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                version BIGINT PRIMARY KEY,
                applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
            )",
        )?;
        let have = db.query_row(
            "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
            [],
            |r| r.get::<i64>(0),
        )? as usize;
        if have > migrations.len() {
            return Err(super::schema::too_new(have, migrations.len()));
        }
        for (i, sql) in migrations.iter().enumerate().skip(have) {
            db.execute_batch(sql)?;
            db.execute(
                "INSERT INTO schema_migrations (version) VALUES (?1)",
                [(i + 1) as i64],
            )?;
        }
        Ok(())
    })();
    match done {
        Ok(()) => Ok(db.execute_batch("COMMIT")?),
        Err(e) => {
            let _ = db.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn passwords_never_show() {
        for url in [
            "postgres://sb:hunter2@db:5432/x",
            "postgres://sb@db/x?password=hunter2&sslmode=disable",
            "postgresql://db/x?PASSWORD=hunter2",
        ] {
            let shown = super::redact(url);
            assert!(
                !shown.contains("hunter2") && shown.contains("***"),
                "{shown}"
            );
        }
        assert_eq!(super::redact("not a url"), "(unparseable URL)");
    }
}
