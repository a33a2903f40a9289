//! Forwarding to the next hop: pooled keep-alive connections, HTTP/1.1 for HTTP/1 callers
//! and HTTP/2 cleartext for HTTP/2 callers (so gRPC passes through), and the rewrite of a
//! request for that hop, which moves the path instead of formatting and parsing a URI.

use std::net::SocketAddr;
use std::time::Duration;

use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Request, Response, Uri, Version};
use http_body::Body;
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::body::{BoxError, ProxyBody};
use crate::connect::{Connector, LocalSockets};
use crate::headers::strip_hop_by_hop;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// One pool per protocol; share it behind an `Arc`: a client clone copies its builders.
#[derive(Debug)]
pub struct Upstreams<B> {
    http1: Client<Connector, B>,
    http2: Client<Connector, B>,
}

impl<B> Default for Upstreams<B>
where
    B: Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    fn default() -> Self {
        Self::new(None)
    }
}

impl<B> Upstreams<B>
where
    B: Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    /// Pools that reach hops on this machine over their Unix sockets where `local` has one.
    pub fn new(local: Option<LocalSockets>) -> Self {
        let connector = Connector::new(CONNECT_TIMEOUT, local);
        let http1 = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .build(connector.clone());
        let http2 = Client::builder(TokioExecutor::new())
            .http2_only(true)
            .build(connector);
        Self { http1, http2 }
    }

    /// Sends a request readied by [`to_next_hop`]; the response body streams.
    pub async fn send(
        &self,
        request: Request<B>,
    ) -> Result<Response<ProxyBody>, hyper_util::client::legacy::Error> {
        let client = if request.version() == Version::HTTP_2 {
            &self.http2
        } else {
            &self.http1
        };
        let response = client.request(request).await?;
        Ok(response.map(|b| b.map_err(Into::into).boxed_unsync()))
    }
}

/// The authority of a next hop, made once per hop rather than once per request.
pub fn authority(address: SocketAddr) -> Authority {
    // A socket address always prints as a valid authority (IPv6 in brackets).
    Authority::try_from(address.to_string()).unwrap_or_else(|_| Authority::from_static("invalid"))
}

/// Points `parts` at `authority` keeping its path and query, drops hop-by-hop headers, and
/// speaks HTTP/1.1 upstream to anything but an HTTP/2 caller.
pub fn to_next_hop(parts: &mut http::request::Parts, authority: &Authority) {
    let path_and_query = std::mem::take(&mut parts.uri)
        .into_parts()
        .path_and_query
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    let mut uri = http::uri::Parts::default();
    uri.scheme = Some(Scheme::HTTP);
    uri.authority = Some(authority.clone());
    uri.path_and_query = Some(path_and_query);
    // Scheme, authority and path are all present, the only thing `from_parts` checks.
    parts.uri = Uri::from_parts(uri).unwrap_or_default();
    strip_hop_by_hop(&mut parts.headers);
    if parts.version != Version::HTTP_2 {
        parts.version = Version::HTTP_11;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_hop_keeps_path_and_query_and_speaks_http11_to_http1_callers() {
        let (mut parts, ()) = Request::get("/v1/models/iris:predict?x=1&y=%20")
            .version(Version::HTTP_10)
            .header("connection", "close")
            .body(())
            .unwrap()
            .into_parts();
        let hop = authority("127.0.0.1:8012".parse().unwrap());
        to_next_hop(&mut parts, &hop);
        assert_eq!(
            parts.uri.to_string(),
            "http://127.0.0.1:8012/v1/models/iris:predict?x=1&y=%20"
        );
        assert_eq!(parts.version, Version::HTTP_11);
        assert!(parts.headers.get("connection").is_none());

        let (mut parts, ()) = Request::get("http://other:1/a")
            .version(Version::HTTP_2)
            .body(())
            .unwrap()
            .into_parts();
        to_next_hop(&mut parts, &authority("[::1]:9000".parse().unwrap()));
        assert_eq!(parts.uri.to_string(), "http://[::1]:9000/a");
        assert_eq!(parts.version, Version::HTTP_2);
    }
}
