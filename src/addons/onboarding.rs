//! The CA download page: requests through the proxy to `http://strata/` (like mitmproxy's `mitm.it`) are
//! answered here with a small HTML page and the CA certificate in the forms devices import: PEM, `.cer`
//! (the same PEM, the name Android expects) and PKCS#12 (Windows).

use crate::addons::LocalResponse;
use crate::certs::CertificateAuthority;

/// The magic host name that reaches this page instead of a server.
pub const HOST: &str = "strata";

/// True if a request for `host` is for the onboarding page.
pub fn is_onboarding_host(host: &str) -> bool {
    host.eq_ignore_ascii_case(HOST)
}

/// The response for `path` (origin-form, query ignored).
pub fn answer(path: &str, ca: &CertificateAuthority) -> LocalResponse {
    let path = path.split(['?', '#']).next().unwrap_or("/");
    match path {
        "/" | "/index.html" => page(200, "text/html; charset=utf-8", INDEX_HTML.as_bytes().to_vec()),
        "/cert/pem" => download(ca.cert_pem().as_bytes().to_vec(), "application/x-x509-ca-cert", "strata-ca-cert.pem"),
        "/cert/cer" => download(ca.cert_pem().as_bytes().to_vec(), "application/x-x509-ca-cert", "strata-ca-cert.cer"),
        "/cert/p12" => download(ca.cert_p12().to_vec(), "application/x-pkcs12", "strata-ca-cert.p12"),
        _ => page(404, "text/plain; charset=utf-8", b"strata: no such page\n".to_vec()),
    }
}

fn page(status: u16, content_type: &str, body: Vec<u8>) -> LocalResponse {
    LocalResponse::new(status, content_type, body)
}

fn download(body: Vec<u8>, content_type: &str, filename: &str) -> LocalResponse {
    let mut response = LocalResponse::new(200, content_type, body);
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
