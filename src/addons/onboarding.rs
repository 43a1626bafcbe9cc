//! The CA download page: requests through the proxy to `http://strata/` (like mitmproxy's `mitm.it`) are
//! answered here with a small HTML page and the CA certificate in the forms devices import: PEM, `.cer`
//! (the same PEM, the name Android expects) and PKCS#12 (Windows).

use crate::addon::Addon;
use crate::certs::CertificateAuthority;
use crate::flow::{HttpFlow, Response};

/// The magic host name that reaches this page instead of a server.
pub const HOST: &str = "strata";

/// True if a request for `host` is for the onboarding page.
pub fn is_onboarding_host(host: &str) -> bool {
    host.eq_ignore_ascii_case(HOST)
}

/// The response for `path` (origin-form, query ignored).
/// The addon: answers every request to the onboarding host, in any mode, with no server connection.
pub struct Onboarding {
    cert_pem: Vec<u8>,
    cert_p12: Vec<u8>,
}

impl Onboarding {
    pub fn new(ca: &CertificateAuthority) -> Self {
        Onboarding { cert_pem: ca.cert_pem().as_bytes().to_vec(), cert_p12: ca.cert_p12().to_vec() }
    }
}

#[async_trait::async_trait]
impl Addon for Onboarding {
    fn name(&self) -> &str {
        "onboarding"
    }

    fn reads_bodies(&self) -> bool {
        false
    }

    async fn requestheaders(&self, flow: &mut HttpFlow) {
        if is_onboarding_host(&flow.request.host) {
            flow.response = Some(answer(&flow.request.path, &self.cert_pem, &self.cert_p12));
        }
    }
}

fn answer(path: &str, cert_pem: &[u8], cert_p12: &[u8]) -> Response {
    let path = path.split(['?', '#']).next().unwrap_or("/");
    match path {
        "/" | "/index.html" => page(200, "text/html; charset=utf-8", INDEX_HTML.as_bytes().to_vec()),
        "/cert/pem" => download(cert_pem.to_vec(), "application/x-x509-ca-cert", "strata-ca-cert.pem"),
        "/cert/cer" => download(cert_pem.to_vec(), "application/x-x509-ca-cert", "strata-ca-cert.cer"),
        "/cert/p12" => download(cert_p12.to_vec(), "application/x-pkcs12", "strata-ca-cert.p12"),
        _ => page(404, "text/plain; charset=utf-8", b"strata: no such page\n".to_vec()),
    }
}

fn page(status: u16, content_type: &str, body: Vec<u8>) -> Response {
    Response::new(status, content_type, body)
}

fn download(body: Vec<u8>, content_type: &str, filename: &str) -> Response {
    let mut response = Response::new(200, content_type, body);
    response.headers.append("content-disposition", format!("attachment; filename=\"{filename}\""));
    response
}

const INDEX_HTML: &str = r#"<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>strata: install the CA certificate</title></head>
<body>
<h1>strata certificate authority</h1>
<p>To let strata show you HTTPS traffic, install its CA certificate on this device and mark it as trusted.
Only do this on devices you control, and remove it when you are done.</p>
<ul>
<li><a href="/cert/pem">PEM</a>: Linux, macOS, iOS (install the profile, then enable full trust under
Settings &gt; General &gt; About &gt; Certificate Trust Settings), Firefox (Settings &gt; Certificates &gt; Import)</li>
<li><a href="/cert/cer">CER</a>: Android (Settings &gt; Security &gt; Install a certificate &gt; CA certificate)</li>
<li><a href="/cert/p12">P12</a>: Windows (open it, choose "Trusted Root Certification Authorities")</li>
</ul>
<p>See <code>certs/README.md</code> in the strata sources for step-by-step instructions.</p>
</body>
</html>
"#;
