//! The request-target as the servers read it. async-h1 normalises the URL (dot segments removed,
//! `\` turned into `/`, raw non-ASCII re-encoded), so routing works on the raw bytes captured below
//! async-h1 (see record.rs) and decodes them the way Kestrel or the 2.0 HttpServer would.

use percent_encoding::percent_decode;

/// Raw path and raw query (without `?`) of a request-target; an absolute-form target keeps only
/// its path. A fragment never reaches a server, but if one arrives it is not part of the query.
pub fn split_target(raw: &[u8]) -> (&[u8], &[u8]) {
    let mut t = raw;
    if let Some(rest) = strip_scheme(t) {
        t = rest
            .iter()
            .position(|&b| b == b'/')
            .map(|i| &rest[i..])
            .unwrap_or(b"/");
    }
    let t = match t.iter().position(|&b| b == b'#') {
        Some(i) => &t[..i],
        None => t,
    };
    match t.iter().position(|&b| b == b'?') {
        Some(i) => (&t[..i], &t[i + 1..]),
        None => (t, b""),
    }
}

fn strip_scheme(t: &[u8]) -> Option<&[u8]> {
    let lower = t
        .get(..8)
        .map(|p| p.to_ascii_lowercase())
        .unwrap_or_default();
    if lower.starts_with(b"http://") {
        Some(&t[7..])
    } else if lower.starts_with(b"https://") {
        Some(&t[8..])
    } else {
        None
    }
}

/// Kestrel: percent-decode everything except `%2F` (an encoded slash stays `%2F` so it cannot
/// create a segment), then remove dot segments.
/// // dotnet/aspnetcore issue 30655; Kestrel UrlDecoder.DecodeRequestLine + PathNormalizer
pub fn kestrel_path(raw: &[u8]) -> String {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'%' && i + 2 < raw.len() {
            let hex = &raw[i + 1..i + 3];
            if let Some(v) = hex_byte(hex) {
                if v == b'/' {
                    out.extend_from_slice(&raw[i..i + 3]);
                } else {
                    out.push(v);
                }
                i += 3;
                continue;
            }
        }
        out.push(raw[i]);
        i += 1;
    }
    remove_dot_segments(&String::from_utf8_lossy(&out))
}

fn hex_byte(h: &[u8]) -> Option<u8> {
    let s = std::str::from_utf8(h).ok()?;
    u8::from_str_radix(s, 16).ok()
}

/// RFC 3986 §5.2.4 on an already split path.
fn remove_dot_segments(path: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    let segments: Vec<&str> = path.split('/').collect();
    let last = segments.len().saturating_sub(1);
    for (i, seg) in segments.iter().enumerate() {
        match *seg {
            "." => {
                if i == last {
                    out.push("");
                }
            }
            ".." => {
                if out.len() > 1 {
                    out.pop();
                }
                if i == last {
                    out.push("");
                }
            }
            s => out.push(s),
        }
    }
    let joined = out.join("/");
    if joined.starts_with('/') {
        joined
    } else {
        format!("/{joined}")
    }
}

/// ASP.NET `[FromQuery]` binding: split on raw `&` and `=`, then `+` is a space and `%XX` a byte
/// (form-urlencoded rules). The first value of a repeated key wins.
pub fn query_pairs(raw_query: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(raw_query)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

pub fn query_get<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .map(|(_, v)| v.as_str())
}

/// 2.0's HttpServer (`Uri.UnescapeDataString` on a segment): every `%XX` decoded, `+` kept.
/// Used for the `<rest>` after `/files/`, where `%2F` and `%5C` must become `/` and `\`.
pub fn unescape_data(raw: &[u8]) -> String {
    percent_decode(raw).decode_utf8_lossy().into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_rules_in_query() {
        let q = query_pairs(
            b"time=2026-08-22T10%3A15%3A30%2B02%3A00&filter=%40%2Fsrc%2Fa%26b%2F&x=a+b",
        );
        assert_eq!(query_get(&q, "time"), Some("2026-08-22T10:15:30+02:00"));
        assert_eq!(query_get(&q, "filter"), Some("@/src/a&b/"));
        assert_eq!(query_get(&q, "x"), Some("a b"));
        // A proxy that decoded %2B before forwarding: the server now reads a space.
        let decoded = query_pairs(b"time=2026-08-22T10:15:30+02:00");
        assert_eq!(
            query_get(&decoded, "time"),
            Some("2026-08-22T10:15:30 02:00")
        );
    }

    #[test]
    fn kestrel_keeps_encoded_slash_and_removes_dots() {
        assert_eq!(
            kestrel_path(b"/api/v1/backup/1/files/%2Fsrc%2F"),
            "/api/v1/backup/1/files/%2Fsrc%2F"
        );
        assert_eq!(kestrel_path(b"/api/v1/a%20b/%2e%2e/c"), "/api/v1/c");
        assert_eq!(kestrel_path(b"/a/./b//c"), "/a/b//c");
        assert_eq!(kestrel_path(b"/caf%C3%A9"), "/caf\u{e9}");
        assert_eq!(kestrel_path(b"/bad%zz%"), "/bad%zz%");
    }

    #[test]
    fn raw_rest_decoding_for_2_0() {
        assert_eq!(unescape_data(b"%2Fhome%2Fme%2F"), "/home/me/");
        assert_eq!(unescape_data(b"C%3A%5CUsers%5C"), "C:\\Users\\");
        assert_eq!(unescape_data(b"a+b%252F"), "a+b%2F");
    }

    #[test]
    fn split_handles_absolute_form_and_query() {
        assert_eq!(split_target(b"/p?q=1#f"), (&b"/p"[..], &b"q=1"[..]));
        assert_eq!(split_target(b"http://h:1/x?y"), (&b"/x"[..], &b"y"[..]));
        assert_eq!(split_target(b"/only"), (&b"/only"[..], &b""[..]));
    }
}
