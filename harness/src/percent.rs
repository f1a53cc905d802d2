//! Percent-encoding exactly as the browser UIs do it, so the tests send what Duplicati's own
//! clients send.

/// encodeURIComponent (`form`: application/x-www-form-urlencoded, space as `+`).
pub fn encode(s: &str, form: bool) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b'!' | b'\'' | b'(' | b')' | b'*' if !form => out.push(b as char),
            b' ' if form => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn matches_encode_uri_component() {
        assert_eq!(
            super::encode("@/source/sub dir/", false),
            "%40%2Fsource%2Fsub%20dir%2F"
        );
        assert_eq!(
            super::encode("2026-08-22T10:15:30+02:00", false),
            "2026-08-22T10%3A15%3A30%2B02%3A00"
        );
        assert_eq!(super::encode("a b&c", true), "a+b%26c");
    }
}
