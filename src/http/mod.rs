//! HTTP as every wire version shares it: the message model (heads, header fields, version), field-name
//! and list syntax, which fields may travel as trailers, and the one parser for URLs and authorities in
//! the whole crate.
//!
//! Nothing here does I/O or knows a wire format; the wire layers (`layers/http1.rs`) and the semantics
//! (`layers/http.rs`) both build on it.

pub mod fields;
pub mod message;
pub mod url;
