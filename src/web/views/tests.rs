use std::io::Write;

use serde_json::json;

use super::{decode, hex_dump, indent_json, indent_markup, protobuf, view};

/// `{1: 150, 2: "testing", 3: {1: 1}}`, as protoc would encode it.
const MESSAGE: &[u8] =
    &[0x08, 0x96, 0x01, 0x12, 0x07, b't', b'e', b's', b't', b'i', b'n', b'g', 0x1a, 0x02, 0x08, 0x01];

#[test]
fn protobuf_is_decoded_without_a_schema() {
    let fields = protobuf(MESSAGE, 0).unwrap();
    assert_eq!(
        json!(fields),
        json!([
            { "field": 1, "type": "varint", "value": 150 },
            { "field": 2, "type": "string", "value": "testing" },
            { "field": 3, "type": "message", "value": [{ "field": 1, "type": "varint", "value": 1 }] },
        ])
    );
    // fixed64 and fixed32, little-endian.
    let fixed = [0x09, 1, 0, 0, 0, 0, 0, 0, 0, 0x15, 2, 0, 0, 0];
    assert_eq!(
        json!(protobuf(&fixed, 0).unwrap()),
        json!([{ "field": 1, "type": "fixed64", "value": 1 }, { "field": 2, "type": "fixed32", "value": 2 }])
    );
}

#[test]
fn what_is_not_protobuf_is_refused() {
    assert!(protobuf(&MESSAGE[..MESSAGE.len() - 1], 0).is_none(), "truncated");
    assert!(protobuf(&[0x0b], 0).is_none(), "a group");
    assert!(protobuf(&[0x00, 0x01], 0).is_none(), "field 0");
    assert!(
        protobuf(&[0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01], 0).is_none(),
        "varint over 64 bits"
    );
    // A length that is not UTF-8 and not a message stays bytes.
    let bytes = [0x12, 0x02, 0xff, 0xfe];
    assert_eq!(json!(protobuf(&bytes, 0).unwrap())[0]["type"], "bytes");
}

#[test]
fn grpc_frames_are_split_and_each_message_decoded() {
    let mut body = vec![0, 0, 0, 0, MESSAGE.len() as u8];
    body.extend_from_slice(MESSAGE);
    body.extend_from_slice(&[1, 0, 0, 0, 2, 0xaa, 0xbb]);
    let shown = view("application/grpc", &body);
    assert_eq!(shown["view"], "grpc");
    assert_eq!(shown["messages"][0]["fields"][1]["value"], "testing");
    assert_eq!(shown["messages"][1], json!({ "compressed": true, "len": 2 }));
    // Broken framing falls back to bytes.
    assert_eq!(view("application/grpc", &[0, 0, 0, 0, 9, 1])["view"], "hex");
}

#[test]
fn json_keeps_its_key_order_and_the_spelling_of_numbers_and_strings() {
    let text = r#" {"z": 1, "a" : [ ], "n":12345678901234567890123, "f":1.50e3,
        "s":"a,b:{c}\"[", "o":{ }, "l":[{"k":null},true]} "#;
    assert_eq!(
        indent_json(text),
        "{\n  \"z\": 1,\n  \"a\": [],\n  \"n\": 12345678901234567890123,\n  \"f\": 1.50e3,\n  \
\"s\": \"a,b:{c}\\\"[\",\n  \"o\": {},\n  \"l\": [\n    {\n      \"k\": null\n    },\n    true\n  ]\n}"
    );
    assert_eq!(indent_json("\"é\\\\\""), "\"é\\\\\"");
}

#[test]
fn json_is_pretty_printed_and_forms_and_multipart_are_split() {
    assert_eq!(
        view("application/json; charset=utf-8", br#"{"a":[1,2]}"#)["text"],
        "{\n  \"a\": [\n    1,\n    2\n  ]\n}"
    );
    let form = view("application/x-www-form-urlencoded", b"a=1&b=hello+world&c=%41%zz");
    assert_eq!(form["pairs"], json!([["a", "1"], ["b", "hello world"], ["c", "A%zz"]]));
    let body = b"preamble\r\n--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nfirst\r\n--XyZ\r\n\
Content-Disposition: form-data; name=\"f\"; filename=\"b.bin\"\r\nContent-Type: application/octet-stream\r\n\r\n\xff\x00\r\n--XyZ--\r\n";
    let parts = view("multipart/form-data; boundary=\"XyZ\"", body);
    assert_eq!(parts["view"], "multipart");
    assert_eq!(parts["parts"][0]["content"], json!({ "text": "first" }));
    assert_eq!(parts["parts"][1]["headers"][1], "Content-Type: application/octet-stream");
    assert_eq!(parts["parts"][1]["content"], json!({ "base64": "/wA=" }));
}

#[test]
fn images_text_and_binary() {
    assert_eq!(view("image/png", b"\x89PNG")["view"], "image");
    assert_eq!(view("text/plain", b"hello")["text"], "hello");
    let binary = view("application/octet-stream", &[0, 1, 2, b'A', 0xff]);
    assert_eq!(binary["view"], "hex");
    assert_eq!(binary["text"], format!("00000000  {:<47}  ...A.\n", "00 01 02 41 ff"));
    assert_eq!(hex_dump(&[b'x'; 17]).lines().count(), 2);
}

#[test]
fn gzip_deflate_br_and_zstd_are_decoded_and_others_say_so() {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(b"compressed text").unwrap();
    assert_eq!(decode("gzip", &gz.finish().unwrap()).unwrap(), b"compressed text");
    let mut zlib = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    zlib.write_all(b"zlib text").unwrap();
    assert_eq!(decode("deflate", &zlib.finish().unwrap()).unwrap(), b"zlib text");
    let mut raw = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
    raw.write_all(b"raw deflate").unwrap();
    assert_eq!(decode("deflate", &raw.finish().unwrap()).unwrap(), b"raw deflate");
    assert_eq!(decode("identity", b"as is").unwrap(), b"as is");
    // brotli of "brotli text" (brotli -c), and zstd by the crate itself.
    let br = [0x0b, 0x05, 0x80, 0x62, 0x72, 0x6f, 0x74, 0x6c, 0x69, 0x20, 0x74, 0x65, 0x78, 0x74, 0x03];
    assert_eq!(decode("br", &br).unwrap(), b"brotli text");
    let zst = zstd::stream::encode_all(&b"zstd text"[..], 3).unwrap();
    assert_eq!(decode("zstd", &zst).unwrap(), b"zstd text");
    assert!(decode("compress", b"x").unwrap_err().contains("compress"));
    assert!(decode("gzip", b"not gzip").is_err());
}

#[test]
fn xml_and_html_are_indented() {
    assert_eq!(
        indent_markup("<?xml version=\"1.0\"?><a><b x=\"1\">text</b><c/></a>"),
        "<?xml version=\"1.0\"?>\n<a>\n  <b x=\"1\">\n    text\n  </b>\n  <c/>\n</a>\n"
    );
    let html = indent_markup("<!doctype html><html><head><meta charset=utf-8><script>if (a < b) { x(); }</script></head><body><br>hi</body></html>");
    assert_eq!(
        html,
        "<!doctype html>\n<html>\n  <head>\n    <meta charset=utf-8>\n    <script>\n      if (a < b) { x(); }\n    </script>\n  </head>\n  <body>\n    <br>\n    hi\n  </body>\n</html>\n"
    );
    assert_eq!(view("application/xml", b"<a>1</a>")["view"], "xml");
    // Unbalanced markup never panics or goes below the left margin.
    assert_eq!(indent_markup("</x></y><z"), "</x>\n</y>\n<z\n");
}
