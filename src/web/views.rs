//! Content views: a body as its type suggests, made on the server so that the API gives them too (`GET
//! /api/flows/ID/SIDE/view`). The body is first decoded (gzip, deflate, br, zstd; another coding is
//! shown as stored, with a note), then shown as JSON (pretty-printed), gRPC or protobuf (decoded without a schema:
//! field numbers, wire types, nested messages), a form, multipart parts, an image, text, or a hex dump.

use std::io::Read;

use base64::Engine as _;
use serde_json::{json, Value};

/// Most bytes shown as a hex dump.
const HEX_LIMIT: usize = 64 * 1024;

/// Deepest nesting the protobuf decoder follows.
const MAX_DEPTH: usize = 16;

/// `bytes` without their `Content-Encoding` (a list, undone from the last); `Err` says why not.
pub fn decode(encoding: &str, bytes: &[u8]) -> Result<Vec<u8>, String> {
    let mut body = bytes.to_vec();
    for coding in encoding.split(',').map(|c| c.trim().to_ascii_lowercase()).rev() {
        body = match coding.as_str() {
            "" | "identity" => body,
            "gzip" | "x-gzip" => read_all(flate2::read::MultiGzDecoder::new(&body[..]))?,
            // "deflate" is zlib-wrapped by the spec; some servers send it raw.
            "deflate" => read_all(flate2::read::ZlibDecoder::new(&body[..]))
                .or_else(|_| read_all(flate2::read::DeflateDecoder::new(&body[..])))?,
            "br" => read_all(brotli_decompressor::Decompressor::new(&body[..], 4096))?,
            "zstd" => {
                read_all(zstd::stream::read::Decoder::new(&body[..]).map_err(|e| format!("cannot decode: {e}"))?)?
            }
            other => return Err(format!("{other} is not decoded here; shown as stored")),
        };
    }
    Ok(body)
}

fn read_all(mut reader: impl Read) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    reader.read_to_end(&mut out).map_err(|e| format!("cannot decode: {e}"))?;
    Ok(out)
}

/// The view of a (decoded) body of `content_type`.
pub fn view(content_type: &str, body: &[u8]) -> Value {
    let kind = content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    if kind.starts_with("image/") {
        return json!({ "view": "image" });
    }
    if kind.contains("json") {
        let text = std::str::from_utf8(body).ok();
        if let Some(text) = text.filter(|t| serde_json::from_str::<Value>(t).is_ok()) {
            return json!({ "view": "json", "text": indent_json(text) });
        }
    }
    if kind.starts_with("application/grpc") {
        if let Some(messages) = grpc_messages(body) {
            return json!({ "view": "grpc", "messages": messages });
        }
    }
    if kind.contains("protobuf") {
        if let Some(fields) = protobuf(body, 0) {
            return json!({ "view": "protobuf", "fields": fields });
        }
    }
    if kind.contains("xml") || kind == "text/html" {
        if let Ok(text) = std::str::from_utf8(body) {
            return json!({ "view": "xml", "text": indent_markup(text) });
        }
    }
    if kind == "application/x-www-form-urlencoded" {
        if let Ok(text) = std::str::from_utf8(body) {
            return json!({ "view": "form", "pairs": form_pairs(text) });
        }
    }
    if kind == "multipart/form-data" {
        if let Some(parts) = boundary(content_type).and_then(|b| multipart(body, &b)) {
            return json!({ "view": "multipart", "parts": parts });
        }
    }
    match std::str::from_utf8(body) {
        // UTF-8 full of control characters is binary all the same.
        Ok(text) if !text.chars().any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t')) => {
            json!({ "view": "text", "text": text })
        }
        _ => json!({ "view": "hex", "text": hex_dump(&body[..body.len().min(HEX_LIMIT)]) }),
    }
}

/// The messages of a gRPC body (each a 5-byte prefix: compressed flag, big-endian length), decoded as
/// protobuf; `None` if the framing does not hold.
fn grpc_messages(mut body: &[u8]) -> Option<Vec<Value>> {
    let mut messages = Vec::new();
    while !body.is_empty() {
        let (prefix, rest) = body.split_at_checked(5)?;
        let len = u32::from_be_bytes([prefix[1], prefix[2], prefix[3], prefix[4]]) as usize;
        let (message, rest) = rest.split_at_checked(len)?;
        messages.push(match (prefix[0], protobuf(message, 0)) {
            (0, Some(fields)) => json!({ "fields": fields }),
            (0, None) => json!({ "bytes": base64::engine::general_purpose::STANDARD.encode(message) }),
            _ => json!({ "compressed": true, "len": len }),
        });
        body = rest;
    }
    Some(messages)
}

/// A protobuf message decoded without its schema: each field's number, wire type and value; a
/// length-delimited value is shown as a nested message when it parses as one, else as text when it is
/// UTF-8, else as bytes. `None` if `bytes` is not a well-formed message.
pub fn protobuf(mut bytes: &[u8], depth: usize) -> Option<Vec<Value>> {
    if depth > MAX_DEPTH {
        return None;
    }
    let mut fields = Vec::new();
    while !bytes.is_empty() {
        let key = varint(&mut bytes)?;
        let number = key >> 3;
        if number == 0 {
            return None;
        }
        let field = match key & 7 {
            0 => json!({ "field": number, "type": "varint", "value": varint(&mut bytes)? }),
            1 => {
                let (value, rest) = bytes.split_at_checked(8)?;
                bytes = rest;
                json!({ "field": number, "type": "fixed64", "value": u64::from_le_bytes(value.try_into().ok()?) })
            }
            5 => {
                let (value, rest) = bytes.split_at_checked(4)?;
                bytes = rest;
                json!({ "field": number, "type": "fixed32", "value": u32::from_le_bytes(value.try_into().ok()?) })
            }
            2 => {
                let len = usize::try_from(varint(&mut bytes)?).ok()?;
                let (value, rest) = bytes.split_at_checked(len)?;
                bytes = rest;
                match protobuf(value, depth + 1).filter(|fields| !fields.is_empty()) {
                    Some(nested) => json!({ "field": number, "type": "message", "value": nested }),
                    None => match std::str::from_utf8(value) {
                        Ok(text) => json!({ "field": number, "type": "string", "value": text }),
                        Err(_) => json!({
                            "field": number,
                            "type": "bytes",
                            "value": base64::engine::general_purpose::STANDARD.encode(value),
                        }),
                    },
                }
            }
            // Groups (3, 4) are long deprecated; 6 and 7 do not exist.
            _ => return None,
        };
        fields.push(field);
    }
    Some(fields)
}

/// A base-128 varint from the front of `bytes`.
fn varint(bytes: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = bytes.split_first()?;
        *bytes = rest;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

/// Valid JSON indented two spaces per level, one member or element per line. The text is re-spaced, not
/// re-encoded: keys keep their order, and numbers and strings their exact spelling (a parse into values
/// would sort keys and round big numbers).
pub fn indent_json(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 4);
    let mut depth = 0usize;
    let mut chars = text.chars().peekable();
    let newline = |out: &mut String, depth: usize| {
        out.push('\n');
        out.push_str(&"  ".repeat(depth));
    };
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                out.push(c);
                while let Some(c) = chars.next() {
                    out.push(c);
                    match c {
                        '\\' => out.extend(chars.next()),
                        '"' => break,
                        _ => {}
                    }
                }
            }
            '{' | '[' => {
                out.push(c);
                while chars.next_if(|c| c.is_ascii_whitespace()).is_some() {}
                if let Some(close) = chars.next_if(|&n| n == if c == '{' { '}' } else { ']' }) {
                    out.push(close);
                } else {
                    depth += 1;
                    newline(&mut out, depth);
                }
            }
            '}' | ']' => {
                depth = depth.saturating_sub(1);
                newline(&mut out, depth);
                out.push(c);
            }
            ',' => {
                out.push(c);
                newline(&mut out, depth);
            }
            ':' => out.push_str(": "),
            c if c.is_ascii_whitespace() => {}
            c => out.push(c),
        }
    }
    out
}

/// HTML elements that have no end tag.
const VOID: [&str; 14] =
    ["area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param", "source", "track", "wbr"];

/// XML or HTML with one tag or text run per line, indented two spaces per open element; the content of
/// `script` and `style` is kept as it is.
pub fn indent_markup(text: &str) -> String {
    let mut out = String::new();
    let mut depth = 0usize;
    let mut rest = text;
    let line = |out: &mut String, depth: usize, piece: &str| {
        let piece = piece.trim();
        if !piece.is_empty() {
            out.push_str(&"  ".repeat(depth));
            out.push_str(piece);
            out.push('\n');
        }
    };
    while !rest.is_empty() {
        let Some(start) = rest.find('<') else {
            line(&mut out, depth, rest);
            break;
        };
        line(&mut out, depth, &rest[..start]);
        let Some(end) = rest[start..].find('>').map(|e| start + e + 1) else {
            line(&mut out, depth, &rest[start..]);
            break;
        };
        let tag = &rest[start..end];
        let name: String = tag
            .trim_start_matches(['<', '/'])
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | ':' | '_'))
            .collect::<String>()
            .to_ascii_lowercase();
        rest = &rest[end..];
        if tag.starts_with("</") {
            depth = depth.saturating_sub(1);
            line(&mut out, depth, tag);
        } else if tag.starts_with("<?") || tag.starts_with("<!") || tag.ends_with("/>") || VOID.contains(&name.as_str())
        {
            line(&mut out, depth, tag);
        } else {
            line(&mut out, depth, tag);
            if name == "script" || name == "style" {
                // Raw text up to the end tag, as it is.
                let close = format!("</{name}");
                let stop = rest.to_ascii_lowercase().find(&close).unwrap_or(rest.len());
                line(&mut out, depth + 1, &rest[..stop]);
                rest = &rest[stop..];
            }
            depth += 1;
        }
    }
    out
}

/// `a=1&b=2` as pairs, percent-decoded (`+` is a space).
fn form_pairs(text: &str) -> Vec<(String, String)> {
    text.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(name), percent_decode(value))
        })
        .collect()
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match u8::from_str_radix(std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("zz"), 16) {
                    Ok(byte) => {
                        out.push(byte);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            byte => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The `boundary` parameter of a multipart content type.
fn boundary(content_type: &str) -> Option<String> {
    content_type.split(';').skip(1).find_map(|param| {
        let (name, value) = param.split_once('=')?;
        name.trim().eq_ignore_ascii_case("boundary").then(|| value.trim().trim_matches('"').to_string())
    })
}

/// The parts of a multipart body: each part's header lines and its content (text, or base64).
fn multipart(body: &[u8], boundary: &str) -> Option<Vec<Value>> {
    let delimiter = format!("--{boundary}");
    let mut parts = Vec::new();
    let mut rest = body;
    // Skip the preamble up to the first delimiter.
    let start = find(rest, delimiter.as_bytes())?;
    rest = &rest[start + delimiter.len()..];
    loop {
        if rest.starts_with(b"--") {
            return Some(parts);
        }
        rest = rest.strip_prefix(b"\r\n")?;
        let end = find(rest, format!("\r\n{delimiter}").as_bytes())?;
        let part = &rest[..end];
        let split = find(part, b"\r\n\r\n")?;
        let headers: Vec<String> = String::from_utf8_lossy(&part[..split]).lines().map(str::to_string).collect();
        let content = &part[split + 4..];
        let content = match std::str::from_utf8(content) {
            Ok(text) => json!({ "text": text }),
            Err(_) => json!({ "base64": base64::engine::general_purpose::STANDARD.encode(content) }),
        };
        parts.push(json!({ "headers": headers, "content": content }));
        rest = &rest[end + 2 + delimiter.len()..];
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|window| window == needle)
}

/// Offset, hex bytes and printable characters, 16 bytes a line.
pub fn hex_dump(bytes: &[u8]) -> String {
    let mut out = String::new();
    for (n, chunk) in bytes.chunks(16).enumerate() {
        let hex: Vec<String> = chunk.iter().map(|b| format!("{b:02x}")).collect();
        let ascii: String = chunk.iter().map(|&b| if (32..127).contains(&b) { b as char } else { '.' }).collect();
        out.push_str(&format!("{:08x}  {:<47}  {ascii}\n", n * 16, hex.join(" ")));
    }
    out
}

#[cfg(test)]
mod tests;
