//! How every Sluice process talks gRPC: the cluster token on each call and optional TLS.
//!
//! This sits beside the generated code because the coordinator, the worker and the CLI all
//! need the same rules and none of them may import another:
//! - Every call carries `authorization: Bearer <token>` when a cluster token is configured;
//!   servers refuse a missing or wrong token with `Unauthenticated` and log the peer. The
//!   comparison runs in constant time.
//! - With a certificate and key, servers (the coordinator and each worker's shuffle service)
//!   speak TLS; with a CA, clients verify the server against it. URLs are rewritten to
//!   `https://` when TLS is on, so `host:port` addresses advertised by workers keep working.

use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_stream::wrappers::TcpListenerStream;
use tokio_stream::{Stream, StreamExt};
use tonic::metadata::{AsciiMetadataValue, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{
    Certificate, Channel, ClientTlsConfig, Endpoint, Identity, ServerTlsConfig,
};
use tonic::{Request, Status};

use crate::MAX_MESSAGE_BYTES;
use crate::pb;

/// A client of the coordinator that sends the cluster token.
pub type CoordinatorClient =
    pb::coordinator_client::CoordinatorClient<InterceptedService<Channel, AddToken>>;
/// A client of a worker's shuffle service that sends the cluster token.
pub type ShuffleClient = pb::shuffle_client::ShuffleClient<InterceptedService<Channel, AddToken>>;

/// Connections a server holds open at once; the next is accepted when one closes.
pub const MAX_CONNECTIONS: usize = 1024;

/// The connections `listener` accepts, with Nagle's algorithm off, at most
/// [`MAX_CONNECTIONS`] open at once. A server-streaming reply is several small writes
/// (headers, data, trailers); with Nagle on, each waits for the peer's delayed ACK (40 ms on
/// Linux), so a reducer fetching hundreds of map outputs one request after another waited
/// seconds doing nothing. tonic's `Server::tcp_nodelay` only applies to listeners tonic
/// binds itself; ours are bound first to learn the port.
pub fn incoming(listener: TcpListener) -> impl Stream<Item = io::Result<Limited>> {
    incoming_at_most(listener, MAX_CONNECTIONS)
}

/// [`incoming`] with at most `max` connections open at once.
fn incoming_at_most(listener: TcpListener, max: usize) -> impl Stream<Item = io::Result<Limited>> {
    let open = Arc::new(Semaphore::new(max));
    TcpListenerStream::new(listener).then(move |conn| {
        let open = open.clone();
        async move {
            // Waiting here leaves further connections in the kernel's backlog.
            let permit = open
                .acquire_owned()
                .await
                .map_err(|_| io::Error::other("the server is stopping"))?;
            let conn = conn?;
            if let Err(e) = conn.set_nodelay(true) {
                // Slower, not wrong: serve the connection anyway.
                tracing::debug!(error = %e, "cannot turn Nagle's algorithm off");
            }
            Ok(Limited {
                conn,
                _permit: permit,
            })
        }
    })
}

/// An accepted connection holding one of the server's connection slots until it closes.
pub struct Limited {
    conn: TcpStream,
    _permit: OwnedSemaphorePermit,
}

impl tonic::transport::server::Connected for Limited {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.conn.connect_info()
    }
}

impl AsyncRead for Limited {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.conn).poll_read(cx, buf)
    }
}

impl AsyncWrite for Limited {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.conn).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.conn).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.conn).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.conn).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.conn.is_write_vectored()
    }
}

/// Longest a call's handler may run before the call fails with `Cancelled` (streams it
/// returns may run on). Generous: a submission lists every input, a plugin upload carries
/// up to 256 MiB.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(300);

/// Calls served at once on one connection; more wait for one to finish.
pub const CALLS_PER_CONNECTION: usize = 256;

/// The server settings every Sluice gRPC server uses: keepalives that notice a vanished
/// peer (so a graceful stop never waits on it for long), a per-call deadline, and a bound
/// on the calls one connection may have in flight.
pub fn server() -> tonic::transport::Server {
    tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(Duration::from_secs(10)))
        .http2_keepalive_timeout(Some(Duration::from_secs(20)))
        .tcp_keepalive(Some(Duration::from_secs(60)))
        .timeout(REQUEST_TIMEOUT)
        .concurrency_limit_per_connection(CALLS_PER_CONNECTION)
        .max_concurrent_streams(Some(CALLS_PER_CONNECTION as u32))
}

/// A security setting that cannot be used (unreadable file, bad token).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SecurityError(String);

/// The cluster token and TLS material of one process.
#[derive(Clone, Default)]
pub struct Security {
    token: Option<Arc<[u8]>>,
    identity: Option<(Vec<u8>, Vec<u8>)>,
    ca: Option<Vec<u8>>,
    /// The name to check in server certificates instead of the URL's host.
    pub tls_domain: Option<String>,
}

impl std::fmt::Debug for Security {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the token.
        f.debug_struct("Security")
            .field("token", &self.token.is_some())
            .field("server_tls", &self.identity.is_some())
            .field("client_tls", &self.ca.is_some())
            .finish()
    }
}

fn read(what: &str, path: &Path) -> Result<Vec<u8>, SecurityError> {
    std::fs::read(path)
        .map_err(|e| SecurityError(format!("reading the {what} {}: {e}", path.display())))
}

impl Security {
    /// No token, no TLS: for tests and a laptop's local mode.
    pub fn none() -> Self {
        Security::default()
    }

    /// Reads the token file (surrounding whitespace ignored, so `echo secret > token` works)
    /// and the PEM files that are given.
    pub fn from_files(
        token_file: Option<&Path>,
        tls_cert: Option<&Path>,
        tls_key: Option<&Path>,
        tls_ca: Option<&Path>,
    ) -> Result<Self, SecurityError> {
        let token = match token_file {
            Some(p) => {
                let raw = read("token file", p)?;
                let token = raw.trim_ascii();
                if token.is_empty() {
                    return Err(SecurityError(format!(
                        "token file {} is empty",
                        p.display()
                    )));
                }
                if !usable_token(token) {
                    return Err(SecurityError(format!(
                        "token file {}: the token must be printable ASCII without line breaks \
                         (generate one with `head -c 32 /dev/urandom | base64`)",
                        p.display()
                    )));
                }
                Some(Arc::from(token))
            }
            None => None,
        };
        let identity = match (tls_cert, tls_key) {
            (Some(c), Some(k)) => Some((read("TLS certificate", c)?, read("TLS key", k)?)),
            (None, None) => None,
            _ => {
                return Err(SecurityError(
                    "--tls-cert and --tls-key go together: give both or neither".into(),
                ));
            }
        };
        let ca = tls_ca.map(|p| read("TLS CA certificate", p)).transpose()?;
        Ok(Security {
            token,
            identity,
            ca,
            tls_domain: None,
        })
    }

    /// Whether calls carry a token.
    pub fn has_token(&self) -> bool {
        self.token.is_some()
    }

    /// The token itself: for the web UI, which checks a login against it and derives its
    /// session cookie and CSRF value from it. Never log it.
    pub fn token_bytes(&self) -> Option<&[u8]> {
        self.token.as_deref()
    }

    /// A token given as bytes: local mode's random per-run token.
    pub fn with_token(token: &[u8]) -> Result<Self, SecurityError> {
        let token = token.trim_ascii();
        if token.is_empty() || !usable_token(token) {
            return Err(SecurityError(
                "a cluster token must be printable ASCII without line breaks".into(),
            ));
        }
        Ok(Security {
            token: Some(Arc::from(token)),
            ..Security::none()
        })
    }

    /// Refuses to serve `service` on `addr` when other machines can reach it and no cluster
    /// token is set, unless `insecure` says the network is trusted: without a token, anyone
    /// who can connect can submit a plugin, which is native code run on every worker.
    pub fn check_exposure(
        &self,
        service: &str,
        addr: SocketAddr,
        insecure: bool,
    ) -> Result<(), SecurityError> {
        if self.has_token() || insecure || addr.ip().is_loopback() {
            return Ok(());
        }
        Err(SecurityError(format!(
            "{service} would listen on {addr}, reachable from other machines, without a cluster \
             token: anyone who could connect could run code on the cluster. Give a token with \
             --token-file (create one with `head -c 32 /dev/urandom | base64 > token`), listen \
             on 127.0.0.1, or pass --insecure on a network you trust"
        )))
    }

    /// Whether clients of this process connect with TLS.
    pub fn client_tls(&self) -> bool {
        self.ca.is_some()
    }

    /// The server side of TLS, when a certificate and key were given.
    pub fn server_tls(&self) -> Option<ServerTlsConfig> {
        self.identity
            .as_ref()
            .map(|(cert, key)| ServerTlsConfig::new().identity(Identity::from_pem(cert, key)))
    }

    /// `addr` with the scheme this process's clients use: `https://` with TLS, else
    /// `http://`. Accepts bare `host:port` as workers advertise it. An explicit `https://` is
    /// never downgraded.
    pub fn url(&self, addr: &str) -> String {
        if addr.starts_with("https://") {
            return addr.to_string();
        }
        let rest = addr.strip_prefix("http://").unwrap_or(addr);
        let scheme = if self.client_tls() { "https" } else { "http" };
        format!("{scheme}://{rest}")
    }

    /// A lazily connecting channel to `addr` (a URL or `host:port`).
    pub fn channel(&self, addr: &str) -> Result<Channel, SecurityError> {
        let url = self.url(addr);
        if url.starts_with("https://") && self.ca.is_none() {
            return Err(SecurityError(format!(
                "{url} uses TLS: give the CA certificate that signed the server's certificate \
                 with --tls-ca"
            )));
        }
        let mut endpoint = Endpoint::from_shared(url.clone())
            .map_err(|e| SecurityError(format!("bad address {addr:?}: {e}")))?
            .connect_timeout(Duration::from_secs(10))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(10))
            .keep_alive_timeout(Duration::from_secs(20));
        if let Some(ca) = &self.ca {
            let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca));
            if let Some(domain) = &self.tls_domain {
                tls = tls.domain_name(domain.clone());
            }
            endpoint = endpoint
                .tls_config(tls)
                .map_err(|e| SecurityError(format!("TLS for {url}: {e}")))?;
        }
        Ok(endpoint.connect_lazy())
    }

    /// A coordinator client over `channel` that sends the token.
    pub fn coordinator_client(&self, channel: Channel) -> CoordinatorClient {
        pb::coordinator_client::CoordinatorClient::with_interceptor(channel, self.add_token())
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES)
    }

    /// A shuffle client over `channel` that sends the token.
    pub fn shuffle_client(&self, channel: Channel) -> ShuffleClient {
        pb::shuffle_client::ShuffleClient::with_interceptor(channel, self.add_token())
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
    }

    /// The client interceptor adding the token.
    pub fn add_token(&self) -> AddToken {
        AddToken {
            header: self.token.as_ref().and_then(|t| {
                AsciiMetadataValue::try_from(format!("Bearer {}", bytes_str(t))).ok()
            }),
        }
    }

    /// The server interceptor checking the token; `service` names the server in logs.
    pub fn check_token(&self, service: &'static str) -> CheckToken {
        CheckToken {
            token: self.token.clone(),
            service,
        }
    }
}

/// `bytes` random bytes from the kernel, hex-encoded: tokens and registration secrets.
pub fn random_hex(bytes: usize) -> io::Result<String> {
    use std::io::Read;
    let mut buf = vec![0u8; bytes];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut buf)?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

/// Whether two secrets are equal, compared without an early exit so the time taken does
/// not tell how much of a guess was right.
pub fn same_secret(a: &[u8], b: &[u8]) -> bool {
    constant_time_eq(a, b)
}

/// Whether `token` fits in an `authorization` header.
fn usable_token(token: &[u8]) -> bool {
    AsciiMetadataValue::try_from(format!("Bearer {}", bytes_str(token))).is_ok()
}

fn bytes_str(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Adds `authorization: Bearer <token>` to every outgoing call.
#[derive(Clone)]
pub struct AddToken {
    header: Option<MetadataValue<tonic::metadata::Ascii>>,
}

impl Interceptor for AddToken {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(h) = &self.header {
            request.metadata_mut().insert("authorization", h.clone());
        }
        Ok(request)
    }
}

/// Refuses calls without the cluster token.
#[derive(Clone)]
pub struct CheckToken {
    token: Option<Arc<[u8]>>,
    service: &'static str,
}

/// Compares without an early exit, so the time taken does not tell how much of a guess
/// was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Interceptor for CheckToken {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        let Some(expected) = &self.token else {
            return Ok(request);
        };
        let given = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "));
        match given {
            Some(t) if constant_time_eq(t, expected) => Ok(request),
            other => {
                let peer = request
                    .remote_addr()
                    .map_or_else(|| "unknown peer".to_string(), |a| a.to_string());
                let why = if other.is_some() {
                    "wrong cluster token"
                } else {
                    "no cluster token"
                };
                tracing::warn!(service = self.service, %peer, "refused a call: {why}");
                Err(Status::unauthenticated(format!(
                    "{why}: give the cluster's token with --token-file or SLUICE_TOKEN_FILE"
                )))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_check() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("token");
        std::fs::write(&f, "s3cret\n").unwrap();
        let sec = Security::from_files(Some(&f), None, None, None).unwrap();
        let mut check = sec.check_token("test");
        let mut add = sec.add_token();
        let ok = add.call(Request::new(())).unwrap();
        assert!(check.call(ok).is_ok());
        assert_eq!(
            check.call(Request::new(())).unwrap_err().code(),
            tonic::Code::Unauthenticated
        );
        std::fs::write(&f, "other").unwrap();
        let wrong = Security::from_files(Some(&f), None, None, None).unwrap();
        let req = wrong.add_token().call(Request::new(())).unwrap();
        assert_eq!(
            check.call(req).unwrap_err().code(),
            tonic::Code::Unauthenticated
        );
        std::fs::write(&f, "  \n").unwrap();
        assert!(Security::from_files(Some(&f), None, None, None).is_err());
    }

    #[test]
    fn reachable_listeners_need_a_token_or_an_explicit_insecure() {
        let addr = |s: &str| s.parse::<SocketAddr>().unwrap();
        let open = Security::none();
        for reachable in ["0.0.0.0:7700", "10.0.0.2:7701", "[::]:7700"] {
            let e = open
                .check_exposure("the coordinator", addr(reachable), false)
                .unwrap_err()
                .to_string();
            assert!(e.contains("--token-file") && e.contains(reachable), "{e}");
            assert!(open.check_exposure("x", addr(reachable), true).is_ok());
        }
        for local in ["127.0.0.1:0", "[::1]:7700"] {
            assert!(open.check_exposure("x", addr(local), false).is_ok());
        }
        let closed = Security::with_token(b"t0ken").unwrap();
        assert!(closed.check_exposure("x", addr("0.0.0.0:1"), false).is_ok());
        assert!(Security::with_token(b" \n").is_err());
    }

    /// A connection past the limit is accepted only once an open one closes.
    #[test]
    fn connections_past_the_limit_wait_for_one_to_close() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let accepted = incoming_at_most(listener, 1);
            tokio::pin!(accepted);
            let _a = TcpStream::connect(addr).await.unwrap();
            let _b = TcpStream::connect(addr).await.unwrap();
            let first = accepted.next().await.unwrap().unwrap();
            let waited = tokio::time::timeout(Duration::from_millis(300), accepted.next()).await;
            assert!(
                waited.is_err(),
                "a second connection was served beside the first"
            );
            drop(first);
            let second = tokio::time::timeout(Duration::from_secs(30), accepted.next()).await;
            assert!(
                matches!(second, Ok(Some(Ok(_)))),
                "served once the first closed"
            );
        });
    }

    #[test]
    fn urls_follow_tls() {
        let plain = Security::none();
        assert_eq!(plain.url("10.0.0.2:7701"), "http://10.0.0.2:7701");
        assert_eq!(plain.url("https://c:7700"), "https://c:7700");
        assert!(plain.channel("https://c:7700").is_err(), "TLS needs a CA");
        let tls = Security {
            ca: Some(Vec::new()),
            ..Security::none()
        };
        assert_eq!(tls.url("http://c:7700"), "https://c:7700");
    }
}
