//! How a next hop is reached: over TCP, or, for a hop on this machine that also listens on a
//! Unix socket, over that socket. On one machine (`serval dev`) a hop over loopback TCP
//! costs each proxy about half its CPU in the kernel's TCP stack, sending and receiving for
//! both ends; a Unix socket hands the bytes over without it (docs/benchmarks.md).

use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::Uri;
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpStream, UnixStream};
use tower::Service;

use crate::body::BoxError;

/// Where the Unix sockets of hops on this machine are: the hop on loopback port `P` also
/// listens on `<dir>/P.sock`.
#[derive(Clone, Debug)]
pub struct LocalSockets {
    dir: Arc<Path>,
}

impl LocalSockets {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into().into(),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The socket a hop on loopback `port` listens on besides its TCP port.
    pub fn path(&self, port: u16) -> PathBuf {
        self.dir.join(format!("{port}.sock"))
    }

    /// The socket for `uri`, when it names a loopback hop that has one.
    fn for_uri(&self, uri: &Uri) -> Option<PathBuf> {
        let host = uri.host()?.trim_start_matches('[').trim_end_matches(']');
        let loopback =
            host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
        let path = self.path(uri.port_u16()?);
        (loopback && path.exists()).then_some(path)
    }
}

/// TCP, or a hop's Unix socket where [`LocalSockets`] knows one.
#[derive(Clone, Debug)]
pub struct Connector {
    tcp: HttpConnector,
    local: Option<LocalSockets>,
    timeout: Duration,
}

impl Connector {
    pub fn new(timeout: Duration, local: Option<LocalSockets>) -> Self {
        let mut tcp = HttpConnector::new();
        tcp.set_nodelay(true);
        tcp.set_connect_timeout(Some(timeout));
        Self {
            tcp,
            local,
            timeout,
        }
    }
}

impl Service<Uri> for Connector {
    type Response = Stream;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Stream, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.tcp.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        if let Some(path) = self.local.as_ref().and_then(|local| local.for_uri(&uri)) {
            let (timeout, mut tcp) = (self.timeout, self.tcp.clone());
            return Box::pin(async move {
                match tokio::time::timeout(timeout, UnixStream::connect(&path)).await {
                    Ok(Ok(stream)) => Ok(Stream::Unix(TokioIo::new(stream))),
                    // A socket left by a process that died, or one this process may not
                    // use: the hop's TCP port still answers.
                    Ok(Err(e)) => {
                        tracing::debug!(socket = %path.display(), error = %e, "over TCP instead");
                        Ok(Stream::Tcp(tcp.call(uri).await?))
                    }
                    Err(_) => {
                        Err(io::Error::new(io::ErrorKind::TimedOut, "connect timed out").into())
                    }
                }
            });
        }
        let connecting = self.tcp.call(uri);
        Box::pin(async move { Ok(Stream::Tcp(connecting.await?)) })
    }
}

/// A connection to a next hop.
#[derive(Debug)]
pub enum Stream {
    Tcp(TokioIo<TcpStream>),
    Unix(TokioIo<UnixStream>),
}

impl Connection for Stream {
    fn connected(&self) -> Connected {
        match self {
            Stream::Tcp(stream) => stream.connected(),
            Stream::Unix(_) => Connected::new(),
        }
    }
}

impl Read for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(stream) => Pin::new(stream).poll_read(cx, buf),
            Stream::Unix(stream) => Pin::new(stream).poll_read(cx, buf),
        }
    }
}

impl Write for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(stream) => Pin::new(stream).poll_write(cx, buf),
            Stream::Unix(stream) => Pin::new(stream).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(stream) => Pin::new(stream).poll_write_vectored(cx, bufs),
            Stream::Unix(stream) => Pin::new(stream).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Tcp(stream) => stream.is_write_vectored(),
            Stream::Unix(stream) => stream.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(stream) => Pin::new(stream).poll_flush(cx),
            Stream::Unix(stream) => Pin::new(stream).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(stream) => Pin::new(stream).poll_shutdown(cx),
            Stream::Unix(stream) => Pin::new(stream).poll_shutdown(cx),
        }
    }
}
