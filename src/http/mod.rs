//! Rules of HTTP messages that hold whatever the wire version: field-name and list syntax, which fields
//! may travel as trailers, and the one parser for authorities (`host[:port]`) in the whole crate.
//!
//! Nothing here does I/O or knows HTTP/1 framing; the wire layers (`layers/http1.rs`) and the semantics
//! (`layers/http.rs`) both build on it.

pub mod fields;
pub mod url;
