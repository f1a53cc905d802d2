//! HS256 JSON Web Tokens as Duplicati issues them.
//! // Duplicati/WebserverCore/Middlewares/JWTProvider.cs (JWTConfig, GenerateToken,
//! // GetTokenValidationParameters): iss = aud = https://duplicati, 5 s clock skew,
//! // claims typ/sid/fam/cnt/nce/sop.

use aws_lc_rs::hmac;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Map, Value};

pub const ISSUER: &str = "https://duplicati";
// JWTProvider.cs (GetTokenValidationParameters): ClockSkew = 5 seconds.
const CLOCK_SKEW_SECS: i64 = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenType {
    Access,
    Refresh,
    Signin,
    SingleOperation,
}

impl TokenType {
    // Duplicati/WebserverCore/Middlewares/JWTProvider.cs: the enum's name is the claim value.
    pub fn as_str(self) -> &'static str {
        match self {
            TokenType::Access => "AccessToken",
            TokenType::Refresh => "RefreshToken",
            TokenType::Signin => "SigninToken",
            TokenType::SingleOperation => "SingleOperationToken",
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum JwtError {
    Malformed,
    BadSignature,
    Expired,
    NotYetValid,
    WrongIssuer,
    WrongType,
}

pub struct JwtKey(hmac::Key);

impl JwtKey {
    pub fn new(secret: &[u8]) -> Self {
        JwtKey(hmac::Key::new(hmac::HMAC_SHA256, secret))
    }

    /// Signs `claims` (plus `typ`, `iss`, `aud`, `nbf`, `exp`, `iat`) valid from `now` for
    /// `lifetime_secs`.
    pub fn sign(
        &self,
        typ: TokenType,
        mut claims: Map<String, Value>,
        now: i64,
        lifetime_secs: i64,
    ) -> String {
        claims.insert("typ".into(), json!(typ.as_str()));
        claims.insert("nbf".into(), json!(now));
        claims.insert("exp".into(), json!(now + lifetime_secs));
        claims.insert("iat".into(), json!(now));
        claims.insert("iss".into(), json!(ISSUER));
        claims.insert("aud".into(), json!(ISSUER));
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
        let payload = URL_SAFE_NO_PAD.encode(Value::Object(claims).to_string());
        let signing_input = format!("{header}.{payload}");
        let tag = hmac::sign(&self.0, signing_input.as_bytes());
        format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
    }

    /// Checks signature, issuer, audience, lifetime and `typ`; returns the claims.
    pub fn verify(
        &self,
        token: &str,
        typ: TokenType,
        now: i64,
    ) -> Result<Map<String, Value>, JwtError> {
        let mut parts = token.trim().split('.');
        let (Some(h), Some(p), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(JwtError::Malformed);
        };
        let header: Value = decode_json(h)?;
        if header.get("alg").and_then(Value::as_str) != Some("HS256") {
            return Err(JwtError::Malformed);
        }
        let sig = URL_SAFE_NO_PAD.decode(s).map_err(|_| JwtError::Malformed)?;
        let signing_input = &token.trim()[..h.len() + 1 + p.len()];
        hmac::verify(&self.0, signing_input.as_bytes(), &sig)
            .map_err(|_| JwtError::BadSignature)?;
        let Value::Object(claims) = decode_json(p)? else {
            return Err(JwtError::Malformed);
        };
        let str_claim = |k: &str| claims.get(k).and_then(Value::as_str);
        if str_claim("iss") != Some(ISSUER) || str_claim("aud") != Some(ISSUER) {
            return Err(JwtError::WrongIssuer);
        }
        let num = |k: &str| claims.get(k).and_then(Value::as_i64);
        let (Some(nbf), Some(exp)) = (num("nbf"), num("exp")) else {
            return Err(JwtError::Malformed);
        };
        if now + CLOCK_SKEW_SECS < nbf {
            return Err(JwtError::NotYetValid);
        }
        if now - CLOCK_SKEW_SECS >= exp {
            return Err(JwtError::Expired);
        }
        if str_claim("typ") != Some(typ.as_str()) {
            return Err(JwtError::WrongType);
        }
        Ok(claims)
    }
}

fn decode_json(segment: &str) -> Result<Value, JwtError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| JwtError::Malformed)?;
    serde_json::from_slice(&bytes).map_err(|_| JwtError::Malformed)
}

pub fn claim_str<'a>(claims: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    claims.get(key).and_then(Value::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims() -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("sid".into(), json!("webserver"));
        m.insert("fam".into(), json!("f1"));
        m
    }

    #[test]
    fn sign_then_verify() {
        let k = JwtKey::new(&[7; 32]);
        let t = k.sign(TokenType::Access, claims(), 1_000, 900);
        let c = k.verify(&t, TokenType::Access, 1_100);
        assert_eq!(
            c.as_ref().ok().and_then(|c| claim_str(c, "fam")),
            Some("f1")
        );
        assert_eq!(
            c.ok().and_then(|c| c.get("aud").cloned()),
            Some(json!(ISSUER))
        );
    }

    #[test]
    fn rejects_tampering_expiry_and_type() {
        let k = JwtKey::new(&[7; 32]);
        let t = k.sign(TokenType::Access, claims(), 1_000, 900);
        assert!(k.verify(&t, TokenType::Access, 1_904).is_ok());
        assert_eq!(
            k.verify(&t, TokenType::Access, 1_905).err(),
            Some(JwtError::Expired)
        );
        assert_eq!(
            k.verify(&t, TokenType::Refresh, 1_100).err(),
            Some(JwtError::WrongType)
        );
        let other = JwtKey::new(&[8; 32]);
        assert_eq!(
            other.verify(&t, TokenType::Access, 1_100).err(),
            Some(JwtError::BadSignature)
        );
        let mut forged = t.clone();
        forged.insert(forged.len() - 2, 'A');
        assert!(k.verify(&forged, TokenType::Access, 1_100).is_err());
        assert_eq!(
            k.verify("a.b", TokenType::Access, 0).err(),
            Some(JwtError::Malformed)
        );
    }
}
