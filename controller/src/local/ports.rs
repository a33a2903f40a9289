//! Free loopback ports for replica processes.

use std::net::TcpListener;

/// A port the OS says is free now. Another process may take it before ours binds; the
/// replica then fails to start and is restarted on new ports.
pub(crate) fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}
