//! Flows as the web UI's JSON: a summary per row of the flow list, and the whole flow for the detail view.
//! Header values and WebSocket payloads are text when they are UTF-8, else base64 with `"base64": true`.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use serde_json::{json, Value};

use crate::flow::{HttpFlow, TcpFlow, TlsFacts};
use crate::http::message::Headers;
use crate::store::StoredFlow;

/// One row of the flow list.
pub fn summary(flow: &StoredFlow) -> Value {
    match flow {
        StoredFlow::Http(flow) => http_summary(flow),
        StoredFlow::Tcp(flow) => tcp_summary(flow),
    }
}

/// The row of an HTTP flow (live or stored).
pub fn http_summary(flow: &HttpFlow) -> Value {
    let response = flow.response.as_ref();
    let kind = match (&flow.websocket, flow.request.version.as_str()) {
        (Some(_), _) => "websocket",
        (None, "HTTP/2.0") => "http2",
        _ => "http1",
    };
    json!({
        "id": flow.id.to_string(),
        "type": kind,
        "started": epoch_ms(flow.started_at),
        "client": flow.client_addr.to_string(),
        "method": flow.request.method,
        "url": flow.request.url(),
        "host": flow.request.host,
        "status": response.map(|r| r.status),
        "size": response.map(|r| r.body_len),
        "duration_ms": (flow.response.is_some() || flow.error.is_some()).then(|| flow.timings.total().as_secs_f64() * 1000.0),
        "error": flow.error,
    })
}

fn tcp_summary(flow: &TcpFlow) -> Value {
    json!({
        "id": flow.id.to_string(),
        "type": "tcp",
        "client": flow.client_addr.to_string(),
        "url": format!("tcp://{}", flow.server),
        "host": flow.server,
        "size": flow.bytes_to_client,
        "duration_ms": flow.duration.as_secs_f64() * 1000.0,
    })
}

/// The whole flow, for the detail view (bodies are fetched on their own).
pub fn detail(flow: &StoredFlow) -> Value {
    let StoredFlow::Http(flow) = flow else {
        let StoredFlow::Tcp(tcp) = flow else { unreachable!() };
        let mut value = tcp_summary(tcp);
        value["bytes_to_server"] = json!(tcp.bytes_to_server);
        value["bytes_to_client"] = json!(tcp.bytes_to_client);
        let chunks = tcp.messages.iter().map(|m| message(m.from_client, "tcp", &m.content, m.at));
        value["messages"] = Value::Array(chunks.collect());
        return value;
    };
    let mut value = http_summary(flow);
    let request = &flow.request;
    value["request"] = json!({
        "method": request.method,
        "url": request.url(),
        "version": request.version.as_str(),
        "headers": headers(&request.headers),
        "trailers": request.trailers.as_ref().map(headers),
        "body_len": request.body_len,
        "body_stored": request.body.as_ref().map(Vec::len),
    });
    value["response"] = match &flow.response {
        Some(response) => json!({
            "status": response.status,
            "reason": response.reason,
            "version": response.version.as_str(),
            "headers": headers(&response.headers),
            "trailers": response.trailers.as_ref().map(headers),
            "body_len": response.body_len,
            "body_stored": response.body.as_ref().map(Vec::len),
        }),
        None => Value::Null,
    };
    let timings = &flow.timings;
    value["timings"] = json!({
        "connect_ms": (timings.connect_ms >= 0.0).then_some(timings.connect_ms),
        "ssl_ms": (timings.ssl_ms >= 0.0 && timings.connect_ms >= 0.0).then_some(timings.ssl_ms),
        "send_ms": timings.send_ms,
        "wait_ms": timings.wait_ms,
        "receive_ms": timings.receive_ms,
    });
    value["client_conn"] = json!({ "address": flow.client_addr.to_string(), "tls": flow.client_tls.as_ref().map(tls) });
    value["server_conn"] =
        json!({ "address": flow.server_addr.map(|a| a.to_string()), "tls": flow.server_tls.as_ref().map(tls) });
    if let Some(websocket) = &flow.websocket {
        let messages: Vec<Value> =
            websocket.messages.iter().map(|m| message(m.from_client, m.kind, &m.payload, m.at)).collect();
        value["websocket"] = json!({ "messages": messages, "duration_ms": websocket.duration.as_secs_f64() * 1000.0 });
    }
    value
}

/// A WebSocket message or a TCP chunk: direction, kind, when (ms since the epoch), content.
fn message(from_client: bool, kind: &str, content: &[u8], at: SystemTime) -> Value {
    let mut value = text_or_base64(content);
    value["from_client"] = json!(from_client);
    value["kind"] = json!(kind);
    value["at"] = json!(epoch_ms(at));
    value
}

fn epoch_ms(at: SystemTime) -> f64 {
    at.duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

fn tls(facts: &TlsFacts) -> Value {
    json!({
        "sni": facts.sni,
        "alpn": facts.alpn,
        "version": facts.version,
        "certificate": facts.certificate.as_deref().map(certificate),
    })
}

/// What a person checks in a certificate: names, issuer, validity, fingerprint; and the PEM to save it.
fn certificate(der: &[u8]) -> Value {
    let lf = pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF);
    let pem = pem::encode_config(&pem::Pem::new("CERTIFICATE", der.to_vec()), lf);
    let sha256: String =
        ring::digest::digest(&ring::digest::SHA256, der).as_ref().iter().map(|b| format!("{b:02X}")).collect();
    let mut value = json!({ "sha256": sha256, "pem": pem });
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else {
        value["error"] = json!("not a certificate x509-parser can read");
        return value;
    };
    let names: Vec<String> = cert
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|ext| ext.value.general_names.iter().map(general_name).collect())
        .unwrap_or_default();
    value["subject"] = json!(cert.subject().to_string());
    value["issuer"] = json!(cert.issuer().to_string());
    value["serial"] = json!(cert.raw_serial_as_string());
    value["not_before"] = json!(cert.validity().not_before.to_string());
    value["not_after"] = json!(cert.validity().not_after.to_string());
    value["alt_names"] = json!(names);
    value
}

/// A subject alternative name as openssl prints it: `DNS:example.com`, `IP:127.0.0.1`.
fn general_name(name: &x509_parser::extensions::GeneralName) -> String {
    use x509_parser::extensions::GeneralName;
    match name {
        GeneralName::DNSName(dns) => format!("DNS:{dns}"),
        GeneralName::IPAddress(bytes) => match <[u8; 4]>::try_from(*bytes) {
            Ok(v4) => format!("IP:{}", std::net::Ipv4Addr::from(v4)),
            Err(_) => match <[u8; 16]>::try_from(*bytes) {
                Ok(v6) => format!("IP:{}", std::net::Ipv6Addr::from(v6)),
                Err(_) => format!("IP:{bytes:02x?}"),
            },
        },
        GeneralName::RFC822Name(mail) => format!("email:{mail}"),
        GeneralName::URI(uri) => format!("URI:{uri}"),
        other => other.to_string(),
    }
}

/// Header fields as `[name, value]` pairs, in order.
fn headers(headers: &Headers) -> Value {
    Value::Array(headers.0.iter().map(|(name, value)| json!([name, String::from_utf8_lossy(value)])).collect())
}

/// `{"text": ...}` for UTF-8 bytes, else `{"text": BASE64, "base64": true}`.
fn text_or_base64(bytes: &[u8]) -> Value {
    match std::str::from_utf8(bytes) {
        Ok(text) => json!({ "text": text, "len": bytes.len() }),
        Err(_) => json!({
            "text": base64::engine::general_purpose::STANDARD.encode(bytes),
            "base64": true,
            "len": bytes.len(),
        }),
    }
}
