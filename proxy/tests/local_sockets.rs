//! A hop on this machine that also listens on a Unix socket is reached through it: one
//! server on a loopback TCP port and on `<dir>/<port>.sock` tells which way each request
//! came in, and the forwarding pools are asked for `http://127.0.0.1:<port>/`.

use std::convert::Infallible;
use std::path::PathBuf;

use bytes::Bytes;
use http::{Request, Response, Version};
use http_body_util::{BodyExt, Empty, Full};
use serval_proxy::body::{ProxyBody, RequestBody};
use serval_proxy::connect::LocalSockets;
use serval_proxy::forward::{authority, to_next_hop, Upstreams};
use serval_proxy::headers::ClientAddr;
use serval_proxy::serve::{serve, Listeners, ServeSettings};
use tokio::net::{TcpListener, UnixListener};

/// Answers "unix" to a request that came over the Unix socket (its peer has port 0), and
/// "tcp" otherwise.
async fn which_way(request: Request<RequestBody>) -> Result<Response<ProxyBody>, Infallible> {
    let port = request.extensions().get::<ClientAddr>().map(|c| c.0.port());
    let way = if port == Some(0) { "unix" } else { "tcp" };
    Ok(Response::new(
        Full::new(Bytes::from(way))
            .map_err(|never| match never {})
            .boxed_unsync(),
    ))
}

async fn answer(upstreams: &Upstreams<RequestBody>, port: u16, version: Version) -> String {
    let (mut parts, ()) = Request::get("/which")
        .version(version)
        .body(())
        .unwrap()
        .into_parts();
    to_next_hop(&mut parts, &authority(([127, 0, 0, 1], port).into()));
    let body = Empty::<Bytes>::new()
        .map_err(|never| match never {})
        .boxed();
    let response = upstreams
        .send(Request::from_parts(parts, body))
        .await
        .expect("an answer");
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8_lossy(&bytes).into_owned()
}

fn scratch_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("serval-local-sockets-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test]
async fn a_hop_with_a_socket_is_reached_through_it_and_others_over_tcp() {
    let dir = scratch_dir();
    let local = LocalSockets::new(&dir);
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = tcp.local_addr().unwrap().port();
    let unix = UnixListener::bind(local.path(port)).unwrap();
    let stack = tower::util::BoxCloneSyncService::new(tower::service_fn(which_way));
    tokio::spawn(serve(
        Listeners {
            tcp,
            unix: Some(unix),
        },
        stack.clone(),
        ServeSettings::default(),
        std::future::pending(),
    ));
    // A second hop with no socket in the directory.
    let tcp_only = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let tcp_only_port = tcp_only.local_addr().unwrap().port();
    tokio::spawn(serve(
        tcp_only,
        stack.clone(),
        ServeSettings::default(),
        std::future::pending(),
    ));
    // A third whose socket was left by a process that died: nothing listens on it.
    let stale = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let stale_port = stale.local_addr().unwrap().port();
    drop(std::os::unix::net::UnixListener::bind(local.path(stale_port)).unwrap());
    tokio::spawn(serve(
        stale,
        stack,
        ServeSettings::default(),
        std::future::pending(),
    ));

    let through_sockets = Upstreams::new(Some(local));
    assert_eq!(
        answer(&through_sockets, port, Version::HTTP_11).await,
        "unix"
    );
    assert_eq!(
        answer(&through_sockets, port, Version::HTTP_2).await,
        "unix"
    );
    assert_eq!(
        answer(&through_sockets, tcp_only_port, Version::HTTP_11).await,
        "tcp"
    );
    assert_eq!(
        answer(&through_sockets, stale_port, Version::HTTP_11).await,
        "tcp",
        "a socket nobody listens on falls back to TCP"
    );
    let tcp_only = Upstreams::default();
    assert_eq!(answer(&tcp_only, port, Version::HTTP_11).await, "tcp");

    std::fs::remove_dir_all(dir).unwrap();
}
