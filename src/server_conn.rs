//! `ServerConnection`: how a layer gets its server, as late as possible.
//!
//! It knows an address (from the mode, a CONNECT target, an absolute URL) but dials only when `connect()`
//! is first called, so anything answered locally never opens a connection. It refuses to dial the proxy's
//! own listeners, resolves and connects under the connect timeout, and sets TCP_NODELAY.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpStream;
use tokio::time::timeout;

use crate::context::{Address, RootContext};
use crate::error::{ProtocolError, Side};
use crate::io::{BoxStream, BufIo};

/// The server side of a connection: a target address and, once needed, an open stream to it.
pub struct ServerConnection {
    root: Arc<RootContext>,
    address: Option<Address>,
    stream: Option<BufIo<BoxStream>>,
    /// True once the open stream has carried a complete exchange (it may have gone stale since).
    reused: bool,
}

impl ServerConnection {
    pub fn new(root: Arc<RootContext>, address: Option<Address>) -> Self {
        ServerConnection { root, address, stream: None, reused: false }
    }

    pub fn address(&self) -> Option<&Address> {
        self.address.as_ref()
    }

    /// Host name for error messages: `host:port`, or `(no server)`.
    pub fn host(&self) -> String {
        self.address.as_ref().map_or_else(|| "(no server)".to_string(), Address::to_string)
    }

    /// Points at a new server. An open connection to a different address is closed.
    pub fn set_server(&mut self, address: Address) {
        if self.address.as_ref() != Some(&address) {
            self.disconnect();
            self.address = Some(address);
        }
    }

    pub fn is_connected(&self) -> bool {
        self.stream.is_some()
    }

    /// True if the open connection has already carried an exchange, so a failure before any response
    /// byte may just mean the server closed it while idle.
    pub fn is_reused(&self) -> bool {
        self.stream.is_some() && self.reused
    }

    /// Records that an exchange on the open connection finished and it may be used again.
    pub fn mark_reusable(&mut self) {
        self.reused = true;
    }

    /// Closes the connection, if open.
    pub fn disconnect(&mut self) {
        self.stream = None;
        self.reused = false;
    }

    /// The open connection, dialling the server first if there is none.
    pub async fn connect(&mut self) -> Result<&mut BufIo<BoxStream>, ProtocolError> {
        if self.stream.is_none() {
            let address = self.address.clone().ok_or(ProtocolError::Refused {
                status: 400,
                reason: "no server address known for this request".into(),
            })?;
            let tcp = self.dial(&address).await?;
            self.stream = Some(BufIo::new(Box::new(tcp)));
            self.reused = false;
        }
        Ok(self.stream.as_mut().expect("connected above"))
    }

    /// The open connection, if any.
    pub fn stream(&mut self) -> Option<&mut BufIo<BoxStream>> {
        self.stream.as_mut()
    }

    async fn dial(&self, address: &Address) -> Result<TcpStream, ProtocolError> {
        let host = address.to_string();
        let connect_timeout = self.root.config.timeouts.connect;
        let work = async {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((address.host.as_str(), address.port))
                .await
                .map_err(|source| ProtocolError::Connect { host: host.clone(), source })?
                .collect();
            if addrs.iter().any(|a| self.is_own_listener(a)) {
                return Err(ProtocolError::SelfConnect { host: host.clone() });
            }
            let mut last_error = None;
            for addr in addrs {
                match TcpStream::connect(addr).await {
                    Ok(stream) => {
                        let _ = stream.set_nodelay(true);
                        return Ok(stream);
                    }
                    Err(e) => last_error = Some(e),
                }
            }
            let source =
                last_error.unwrap_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "no addresses found"));
            Err(ProtocolError::Connect { host: host.clone(), source })
        };
        match timeout(connect_timeout, work).await {
            Ok(result) => result,
            Err(_) => Err(ProtocolError::Timeout { side: Side::Server, step: "connect" }),
        }
    }

    /// True if `addr` is one of our listeners (a wildcard listener matches any local address on its port).
    fn is_own_listener(&self, addr: &SocketAddr) -> bool {
        self.root.listen_addrs.iter().any(|l| {
            l.port() == addr.port() && (l.ip() == addr.ip() || (l.ip().is_unspecified() && is_local(addr)))
        })
    }
}

fn is_local(addr: &SocketAddr) -> bool {
    addr.ip().is_loopback() || addr.ip().is_unspecified()
}
