//! HTTP headers that carry Serval's contracts between processes.

/// Set by the activator on every request it forwards, so a queue-proxy can tell the
/// concurrency that came through the activator from direct traffic and the autoscaler does
/// not count it twice.
pub const VIA_ACTIVATOR: &str = "x-serval-via-activator";

/// The request id the activator assigns (or keeps, when the client sent one).
pub const REQUEST_ID: &str = "x-request-id";

use http::header::{HeaderName, CONNECTION, TE, TRANSFER_ENCODING, UPGRADE};
use http::HeaderMap;

/// Removes hop-by-hop headers, which belong to one connection and are not forwarded
/// (RFC 9110 §7.6.1): those the `Connection` header names, and the standard ones. gRPC's
/// `te: trailers` is end to end and stays.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| {
            v.split(',')
                .map(|s| s.trim().to_string())
                .collect::<Vec<_>>()
        })
        .filter_map(|name| HeaderName::try_from(name).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in [CONNECTION, TRANSFER_ENCODING, UPGRADE] {
        headers.remove(name);
    }
    headers.remove("keep-alive");
    headers.remove("proxy-connection");
    if headers.get(TE).is_some_and(|v| v != "trailers") {
        headers.remove(TE);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_connection_scoped_headers_and_keeps_grpc_te() {
        let mut headers = HeaderMap::new();
        for (name, value) in [
            ("connection", "keep-alive, x-hop"),
            ("x-hop", "1"),
            ("keep-alive", "timeout=5"),
            ("upgrade", "h2c"),
            ("te", "trailers"),
            ("content-type", "application/json"),
        ] {
            headers.insert(HeaderName::from_static(name), value.parse().unwrap());
        }
        strip_hop_by_hop(&mut headers);
        let mut left: Vec<&str> = headers.keys().map(|k| k.as_str()).collect();
        left.sort();
        assert_eq!(left, vec!["content-type", "te"]);
        let mut gzip = HeaderMap::new();
        gzip.insert(TE, "gzip".parse().unwrap());
        strip_hop_by_hop(&mut gzip);
        assert!(gzip.is_empty());
    }
}
