//! `Socks5Layer`: the SOCKS5 handshake of a `-m socks5` listener (RFC 1928; with `--proxyauth`, the
//! username/password method of RFC 1929, else no authentication).
//!
//! It reads the client's greeting and CONNECT request, answers success at once (the server connection
//! stays lazy, as after an HTTP CONNECT), records the requested address as the server, and hands the
//! rest of the connection to `next_layer()`: TLS interception, HTTP or a raw relay, exactly as for a
//! CONNECT tunnel. The parsers are pure functions over bytes so they can be tested and fuzzed directly.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use tokio::io::AsyncWriteExt;
use tokio::time::timeout;

use crate::context::{Address, Context, Facts};
use crate::error::{ProtocolError, Side};
use crate::io::Parsed;
use crate::layer::{run_next_layer, BoxFuture, ClientIo, Layer, LayerKind};

const VERSION: u8 = 5;
const METHOD_NO_AUTH: u8 = 0x00;
const METHOD_USER_PASS: u8 = 0x02;
const METHOD_NONE_ACCEPTABLE: u8 = 0xFF;
/// Version byte of the username/password subnegotiation (RFC 1929).
const USER_PASS_VERSION: u8 = 0x01;
const CMD_CONNECT: u8 = 0x01;
const REPLY_SUCCEEDED: u8 = 0x00;
const REPLY_NOT_ALLOWED: u8 = 0x02;
const REPLY_COMMAND_NOT_SUPPORTED: u8 = 0x07;
const REPLY_ADDRESS_NOT_SUPPORTED: u8 = 0x08;

/// Longest SOCKS5 message: a CONNECT request with a 255-byte domain name.
const MAX_MESSAGE_BYTES: usize = 4 + 1 + 255 + 2;

/// The SOCKS5 handshake layer.
pub struct Socks5Layer {
    ctx: Arc<Context>,
}

/// A SOCKS5 request that cannot be served, with the reply code that says why.
#[derive(Debug, PartialEq, Eq)]
pub enum Socks5Error {
    /// Not SOCKS version 5, or malformed.
    Malformed(&'static str),
    /// A command other than CONNECT.
    UnsupportedCommand(u8),
    /// An unknown address type.
    UnsupportedAddress(u8),
}

impl Socks5Layer {
    pub fn new(parent: &Arc<Context>) -> Self {
        Socks5Layer { ctx: parent.push(LayerKind::Socks5) }
    }

    async fn handshake(self, mut client: ClientIo) -> Result<(), ProtocolError> {
        let methods = self.read_message(&mut client, parse_greeting).await?;
        let auth = self.ctx.config().addons.proxyauth.as_ref();
        let method = if auth.is_some() { METHOD_USER_PASS } else { METHOD_NO_AUTH };
        if !methods.contains(&method) {
            let _ = client.write_all(&[VERSION, METHOD_NONE_ACCEPTABLE]).await;
            return Err(ProtocolError::BadRequest(format!(
                "SOCKS5 client does not offer method {method} (strata requires it)"
            )));
        }
        client.write_all(&[VERSION, method]).await.map_err(ProtocolError::ClientIo)?;
        if let Some(auth) = auth {
            let (user, password) = self.read_message(&mut client, parse_user_pass).await?;
            let accepted = auth.accepts(&user, &password);
            let status = if accepted { 0 } else { 1 };
            client.write_all(&[USER_PASS_VERSION, status]).await.map_err(ProtocolError::ClientIo)?;
            if !accepted {
                return Err(ProtocolError::BadRequest(format!("SOCKS5 credentials for '{user}' refused")));
            }
        }
        let address = self.read_message(&mut client, parse_request).await?;
        if let Some(blocked) = self.ctx.blocked() {
            let _ = client.write_all(&reply(REPLY_NOT_ALLOWED)).await;
            return Err(ProtocolError::Blocked(*blocked));
        }
        client.write_all(&reply(REPLY_SUCCEEDED)).await.map_err(ProtocolError::ClientIo)?;
        let ctx = self.ctx.with_facts(Facts { server: Some(address), ..Facts::default() });
        run_next_layer(ctx, client).await
    }

    /// Reads until `parse` accepts a whole message, under the read timeout; consumes it. A request the
    /// parser refuses is answered with the matching SOCKS5 reply.
    async fn read_message<T>(
        &self,
        client: &mut ClientIo,
        parse: fn(&[u8]) -> Parsed<T, Socks5Error>,
    ) -> Result<T, ProtocolError> {
        let deadline = self.ctx.config().timeouts.read;
        let work = async {
            loop {
                match parse(client.buffered()) {
                    Ok(Some((value, len))) => {
                        client.consume(len);
                        return Ok(value);
                    }
                    Ok(None) => {}
                    Err(error) => {
                        let code = match error {
                            Socks5Error::UnsupportedCommand(_) => Some(REPLY_COMMAND_NOT_SUPPORTED),
                            Socks5Error::UnsupportedAddress(_) => Some(REPLY_ADDRESS_NOT_SUPPORTED),
                            Socks5Error::Malformed(_) => None,
                        };
                        if let Some(code) = code {
                            let _ = client.write_all(&reply(code)).await;
                        }
                        return Err(ProtocolError::BadRequest(format!("SOCKS5: {error:?}")));
                    }
                }
                if client.fill_more(MAX_MESSAGE_BYTES).await.map_err(ProtocolError::ClientIo)? == 0 {
                    return Err(ProtocolError::ClientIo(std::io::ErrorKind::UnexpectedEof.into()));
                }
            }
        };
        timeout(deadline, work)
            .await
            .map_err(|_| ProtocolError::Timeout { side: Side::Client, step: "SOCKS5 handshake" })?
    }
}

impl Layer for Socks5Layer {
    fn run(self: Box<Self>, io: ClientIo) -> BoxFuture<'static, Result<(), ProtocolError>> {
        Box::pin(self.handshake(io))
    }
}

/// A reply with `code` and an unspecified bound address (the connection to the server is not open yet).
fn reply(code: u8) -> [u8; 10] {
    [VERSION, code, 0, 1, 0, 0, 0, 0, 0, 0]
}

/// Parses the greeting `VER NMETHODS METHODS...`: the offered methods, or `None` if incomplete.
pub fn parse_greeting(buf: &[u8]) -> Parsed<Vec<u8>, Socks5Error> {
    match buf {
        [] | [_] => Ok(None),
        [version, ..] if *version != VERSION => Err(Socks5Error::Malformed("not SOCKS version 5")),
        [_, 0, ..] => Err(Socks5Error::Malformed("no authentication methods offered")),
        [_, count, rest @ ..] => {
            let count = *count as usize;
            Ok((rest.len() >= count).then(|| (rest[..count].to_vec(), 2 + count)))
        }
    }
}

/// Parses the username/password subnegotiation `VER ULEN UNAME PLEN PASSWD` (RFC 1929).
pub fn parse_user_pass(buf: &[u8]) -> Parsed<(String, String), Socks5Error> {
    let Some(&version) = buf.first() else { return Ok(None) };
    if version != USER_PASS_VERSION {
        return Err(Socks5Error::Malformed("not username/password version 1"));
    }
    let Some(&user_len) = buf.get(1) else { return Ok(None) };
    let user_end = 2 + user_len as usize;
    let Some(&pass_len) = buf.get(user_end) else { return Ok(None) };
    let end = user_end + 1 + pass_len as usize;
    if buf.len() < end {
        return Ok(None);
    }
    let text = |bytes: &[u8]| {
        String::from_utf8(bytes.to_vec()).map_err(|_| Socks5Error::Malformed("credentials are not UTF-8"))
    };
    Ok(Some(((text(&buf[2..user_end])?, text(&buf[user_end + 1..end])?), end)))
}

/// Parses the request `VER CMD RSV ATYP DST.ADDR DST.PORT`: the CONNECT target, or `None` if incomplete.
pub fn parse_request(buf: &[u8]) -> Parsed<Address, Socks5Error> {
    if buf.len() < 5 {
        return Ok(None);
    }
    if buf[0] != VERSION {
        return Err(Socks5Error::Malformed("not SOCKS version 5"));
    }
    if buf[1] != CMD_CONNECT {
        return Err(Socks5Error::UnsupportedCommand(buf[1]));
    }
    let addr_end = match buf[3] {
        1 => 4 + 4,
        3 => 5 + buf[4] as usize,
        4 => 4 + 16,
        other => return Err(Socks5Error::UnsupportedAddress(other)),
    };
    if buf.len() < addr_end + 2 {
        return Ok(None);
    }
    let host = match buf[3] {
        1 => Ipv4Addr::from(<[u8; 4]>::try_from(&buf[4..addr_end]).expect("4 bytes")).to_string(),
        4 => Ipv6Addr::from(<[u8; 16]>::try_from(&buf[4..addr_end]).expect("16 bytes")).to_string(),
        _ => match std::str::from_utf8(&buf[5..addr_end]) {
            Ok(name) if !name.is_empty() && name.chars().all(|c| c.is_ascii_graphic()) => name.to_string(),
            _ => return Err(Socks5Error::Malformed("invalid domain name")),
        },
    };
    let port = u16::from_be_bytes([buf[addr_end], buf[addr_end + 1]]);
    Ok(Some((Address::new(host, port), addr_end + 2)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greeting_is_parsed_when_complete() {
        assert_eq!(parse_greeting(&[5]), Ok(None));
        assert_eq!(parse_greeting(&[5, 2, 0]), Ok(None));
        assert_eq!(parse_greeting(&[5, 2, 0, 2, 9]), Ok(Some((vec![0, 2], 4))));
        assert!(parse_greeting(&[4, 1, 0]).is_err());
    }

    #[test]
    fn requests_for_each_address_type() {
        let v4 = [5, 1, 0, 1, 127, 0, 0, 1, 0x1F, 0x90];
        assert_eq!(parse_request(&v4), Ok(Some((Address::new("127.0.0.1", 8080), 10))));
        let mut name = vec![5, 1, 0, 3, 11];
        name.extend_from_slice(b"example.org");
        name.extend_from_slice(&[0, 80]);
        assert_eq!(parse_request(&name), Ok(Some((Address::new("example.org", 80), name.len()))));
        let mut v6 = vec![5, 1, 0, 4];
        v6.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
        v6.extend_from_slice(&[1, 187]);
        assert_eq!(parse_request(&v6), Ok(Some((Address::new("::1", 443), 22))));
        for split in 0..name.len() {
            assert_eq!(parse_request(&name[..split]), Ok(None), "split at {split}");
        }
    }

    #[test]
    fn username_password_subnegotiation() {
        let message = [1, 5, b'a', b'l', b'i', b'c', b'e', 2, b'p', b'w'];
        for split in 0..message.len() {
            assert_eq!(parse_user_pass(&message[..split]), Ok(None));
        }
        assert_eq!(parse_user_pass(&message), Ok(Some((("alice".into(), "pw".into()), 10))));
        assert!(parse_user_pass(&[5, 0, 0]).is_err());
    }

    #[test]
    fn unsupported_requests_are_refused() {
        assert_eq!(parse_request(&[5, 2, 0, 1, 0, 0, 0, 0, 0, 0]), Err(Socks5Error::UnsupportedCommand(2)));
        assert_eq!(parse_request(&[5, 1, 0, 9, 0, 0]), Err(Socks5Error::UnsupportedAddress(9)));
        assert!(parse_request(&[5, 1, 0, 3, 0, 0, 80]).is_err());
    }
}
