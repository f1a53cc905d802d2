//! The secrets the sniffer looks for, in every encoding they could travel in.

use std::fmt;

use base64::Engine as _;

use crate::percent;

/// A value that must not leave the host, and the name tests print instead of it.
#[derive(Clone)]
pub struct Secret {
    pub label: String,
    pub value: String,
}

impl Secret {
    pub fn new(label: &str, value: &str) -> Secret {
        Secret {
            label: label.to_owned(),
            value: value.to_owned(),
        }
    }

    /// The encodings a secret can travel in: as typed, inside a JSON string (both serde's and
    /// the `\uXXXX` ASCII style), percent-encoded for a URL or a form, and base64 (three
    /// alignments, since base64 of a substring depends on its offset in the encoded whole).
    pub fn forms(&self) -> Vec<(&'static str, Vec<u8>)> {
        let v = &self.value;
        let json = serde_json::Value::String(v.clone()).to_string();
        let json = json[1..json.len() - 1].to_owned();
        let mut forms: Vec<(&'static str, Vec<u8>)> = vec![
            ("raw", v.as_bytes().to_vec()),
            ("JSON-escaped", json.into_bytes()),
            ("JSON-escaped (ASCII)", json_ascii(v).into_bytes()),
            ("URL-encoded", percent::encode(v, false).into_bytes()),
            (
                "URL-encoded (lowercase hex)",
                percent::encode(v, false).to_ascii_lowercase().into_bytes(),
            ),
            ("form-encoded", percent::encode(v, true).into_bytes()),
        ];
        for (form, needle) in base64_forms(v.as_bytes()) {
            forms.push((form, needle));
        }
        let mut seen = std::collections::HashSet::new();
        forms.retain(|(_, needle)| !needle.is_empty() && seen.insert(needle.clone()));
        forms
    }
}

pub struct Finding {
    pub secret: String,
    pub form: &'static str,
    pub flow: String,
    pub offset: usize,
    pub before: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({}) in flow {} at byte {}, after {:?}",
            self.secret, self.form, self.flow, self.offset, self.before
        )
    }
}

fn json_ascii(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_ascii() && !c.is_ascii_control() => out.push(c),
            c => {
                let mut units = [0u16; 2];
                for u in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{u:04x}"));
                }
            }
        }
    }
    out
}

/// The part of base64(prefix + secret) that depends only on the secret, for prefixes of 0, 1
/// and 2 bytes: a match means the secret sits somewhere in a base64 payload.
fn base64_forms(secret: &[u8]) -> Vec<(&'static str, Vec<u8>)> {
    let names = ["base64", "base64 (offset 1)", "base64 (offset 2)"];
    let mut out = Vec::new();
    for (pad, name) in names.iter().enumerate() {
        let mut input = vec![0u8; pad];
        input.extend_from_slice(secret);
        let encoded = base64::engine::general_purpose::STANDARD_NO_PAD.encode(&input);
        // Characters touched by the prefix: ceil(pad*8/6); the tail char may mix in padding.
        let start = (pad * 8).div_ceil(6);
        let full = (input.len() * 8) / 6;
        if full > start {
            out.push((*name, encoded.as_bytes()[start..full].to_vec()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn every_encoding_of_the_password_is_searched() {
        let s = Secret::new("pw", "ab\"+/ &é");
        let forms: Vec<(&str, String)> = s
            .forms()
            .into_iter()
            .map(|(f, n)| (f, String::from_utf8(n).unwrap()))
            .collect();
        let has = |needle: &str| forms.iter().any(|(_, n)| n == needle);
        assert!(has("ab\"+/ &é"));
        assert!(has("ab\\\"+/ &é"));
        assert!(has("ab\\\"+/ &\\u00e9"));
        assert!(has("ab%22%2B%2F%20%26%C3%A9"));
        assert!(has("ab%22%2B%2F+%26%C3%A9"));
        let b64 = base64::engine::general_purpose::STANDARD.encode("xx:ab\"+/ &é and more");
        assert!(forms
            .iter()
            .any(|(f, n)| f.starts_with("base64") && b64.contains(n.as_str())));
    }
}
