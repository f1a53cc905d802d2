//! Minimal static files: `/` and the ngclient SPA index with the proxy prefix patched in.
//! // Duplicati/WebserverCore/Middlewares/StaticFilesMiddleware.cs (UseDefaultStaticFiles,
//! // PatchIndexContent)

use http_types::{Method, Response};

use crate::app::App;
use crate::ctx::Ctx;
use crate::reply;

const NGCLIENT_INDEX: &str = r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Duplicati</title>
<base href="/ngclient/">
</head>
<body><app-root>duplicati-standin ngclient placeholder</app-root></body>
</html>
"#;

// Duplicati/Server/webroot/index.html: picks the theme (ngclient since 2.2) and moves there.
const ROOT_INDEX: &str = r#"<!doctype html>
<html><head><meta charset="utf-8"><title>Duplicati</title>
<meta http-equiv="refresh" content="0; url=ngclient/"></head>
<body><a href="ngclient/">Duplicati</a></body></html>
"#;

/// PatchIndexContent: `<meta name="duplicati-proxy-config" content="<prefix>/">` before
/// `</head>` and `<base href="<prefix>/ngclient/">` (or X-Forwarded-Prefix-Ngclient). The header
/// value goes in unescaped, as Duplicati does.
pub fn patch_index(content: &str, prefix: &str, ngclient_prefix: &str) -> String {
    let mut prefix = prefix.to_string();
    if !prefix.ends_with('/') {
        prefix.push('/');
    }
    let ng = if ngclient_prefix.trim().is_empty() {
        format!("{prefix}ngclient/")
    } else {
        ngclient_prefix.to_string()
    };
    let head = format!("<meta name=\"duplicati-proxy-config\" content=\"{prefix}\"/> </head>");
    content.replacen("</head>", &head, 1).replacen(
        "<base href=\"/ngclient/\">",
        &format!("<base href=\"{ng}\">"),
        1,
    )
}

fn has_extension(path: &str) -> bool {
    let last = path.rsplit('/').next().unwrap_or("");
    last.contains('.')
}

pub fn serve(app: &App, ctx: &Ctx) -> Response {
    if app.config.api_only || !matches!(ctx.method, Method::Get | Method::Head) {
        return reply::empty(404);
    }
    let path = ctx.path.as_str();
    if path == "/" || path == "/index.html" {
        return reply::html(ROOT_INDEX.to_string());
    }
    if path.starts_with("/ngclient") && (!has_extension(path) || path.ends_with("/index.html")) {
        let first = |names: &[&str]| {
            names
                .iter()
                .find_map(|n| ctx.header(n).filter(|v| !v.trim().is_empty()))
                .unwrap_or_default()
        };
        let prefix = first(&["x-forwarded-prefix", "x-forwarded-prefix-alt"]);
        let ng = first(&["x-forwarded-prefix-ngclient"]);
        return reply::html(patch_index(NGCLIENT_INDEX, &prefix, &ng));
    }
    reply::empty(404)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_patching() {
        let plain = patch_index(NGCLIENT_INDEX, "", "");
        assert!(plain.contains(r#"<meta name="duplicati-proxy-config" content="/"/>"#));
        assert!(plain.contains(r#"<base href="/ngclient/">"#));
        let sub = patch_index(NGCLIENT_INDEX, "/duplicati", "");
        assert!(sub.contains(r#"content="/duplicati/""#));
        assert!(sub.contains(r#"<base href="/duplicati/ngclient/">"#));
        let ng = patch_index(NGCLIENT_INDEX, "/duplicati", "/x/ng/");
        assert!(ng.contains(r#"<base href="/x/ng/">"#));
    }
}
