//! The `CMDB-HMAC-SHA256` request signature.
//!
//! ```text
//! Authorization: CMDB-HMAC-SHA256 KeyId=<id>, Timestamp=<unix seconds>, Nonce=<nonce>, Signature=<hex>
//! Signature = hex(HMAC-SHA256(secret, METHOD "\n" TARGET "\n" TIMESTAMP "\n" NONCE "\n" hex(SHA-256(body))))
//! ```
//! TARGET is the path as sent, plus "?" and the query only when there is one. The agent signs, the
//! server verifies; both call this module, so they cannot drift apart.

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The scheme name that opens the Authorization header.
pub const SCHEME: &str = "CMDB-HMAC-SHA256";

type HmacSha256 = Hmac<Sha256>;

/// Lowercase hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The exact bytes that are signed.
pub fn string_to_sign(method: &str, target: &str, timestamp: i64, nonce: &str, body: &[u8]) -> String {
    format!("{method}\n{target}\n{timestamp}\n{nonce}\n{}", sha256_hex(body))
}

fn mac(secret: &str, message: &str) -> [u8; 32] {
    // HMAC takes keys of any length, so construction cannot fail.
    let mut mac = <HmacSha256 as KeyInit>::new_from_slice(secret.as_bytes()).unwrap_or_else(|_| unreachable!());
    mac.update(message.as_bytes());
    mac.finalize().into_bytes().into()
}

/// The lowercase hex signature of a request.
pub fn sign(secret: &str, method: &str, target: &str, timestamp: i64, nonce: &str, body: &[u8]) -> String {
    hex::encode(mac(secret, &string_to_sign(method, target, timestamp, nonce, body)))
}

/// A complete Authorization header value.
pub fn authorization(
    key_id: &str,
    secret: &str,
    method: &str,
    target: &str,
    timestamp: i64,
    nonce: &str,
    body: &[u8],
) -> String {
    let signature = sign(secret, method, target, timestamp, nonce, body);
    format!("{SCHEME} KeyId={key_id}, Timestamp={timestamp}, Nonce={nonce}, Signature={signature}")
}

/// A parsed Authorization header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedHeader {
    /// The agent key's public id.
    pub key_id: String,
    /// Unix seconds the agent claims.
    pub timestamp: i64,
    /// The single-use nonce.
    pub nonce: String,
    /// The 32 signature bytes.
    pub signature: [u8; 32],
}

/// Why an Authorization header is unusable (the server answers 401 with this text).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// Not our scheme.
    #[error("authorization scheme must be {SCHEME}")]
    Scheme,
    /// A required parameter is missing or repeated.
    #[error("authorization parameter {0} is missing or repeated")]
    Parameter(&'static str),
    /// A parameter has a malformed value.
    #[error("authorization parameter {0} is malformed")]
    Malformed(&'static str),
}

fn token_ok(value: &str, min: usize, max: usize) -> bool {
    (min..=max).contains(&value.len())
        && value.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

/// Parses `CMDB-HMAC-SHA256 KeyId=..., Timestamp=..., Nonce=..., Signature=...` (parameters in any order).
pub fn parse_authorization(value: &str) -> Result<SignedHeader, HeaderError> {
    let rest = value.trim().strip_prefix(SCHEME).ok_or(HeaderError::Scheme)?;
    if !rest.starts_with(' ') {
        return Err(HeaderError::Scheme);
    }
    let (mut key_id, mut timestamp, mut nonce, mut signature) = (None, None, None, None);
    for part in rest.split(',') {
        let (name, val) = part.trim().split_once('=').ok_or(HeaderError::Malformed("parameter"))?;
        let slot = match name.trim() {
            "KeyId" => &mut key_id,
            "Timestamp" => &mut timestamp,
            "Nonce" => &mut nonce,
            "Signature" => &mut signature,
            _ => return Err(HeaderError::Malformed("parameter name")),
        };
        if slot.replace(val.trim()).is_some() {
            return Err(HeaderError::Parameter("repeated"));
        }
    }
    let key_id = key_id.ok_or(HeaderError::Parameter("KeyId"))?;
    let timestamp = timestamp.ok_or(HeaderError::Parameter("Timestamp"))?;
    let nonce = nonce.ok_or(HeaderError::Parameter("Nonce"))?;
    let signature = signature.ok_or(HeaderError::Parameter("Signature"))?;
    if !token_ok(key_id, 1, 64) {
        return Err(HeaderError::Malformed("KeyId"));
    }
    if !token_ok(nonce, 16, 64) {
        return Err(HeaderError::Malformed("Nonce"));
    }
    let timestamp: i64 = timestamp.parse().map_err(|_| HeaderError::Malformed("Timestamp"))?;
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(signature, &mut bytes).map_err(|_| HeaderError::Malformed("Signature"))?;
    Ok(SignedHeader { key_id: key_id.to_owned(), timestamp, nonce: nonce.to_owned(), signature: bytes })
}

/// True when `header` carries the right signature for this request, compared in constant time.
pub fn verify(secret: &str, header: &SignedHeader, method: &str, target: &str, body: &[u8]) -> bool {
    let expected = mac(secret, &string_to_sign(method, target, header.timestamp, &header.nonce, body));
    expected.ct_eq(&header.signature).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "s3cr3t-example";
    const NONCE: &str = "00112233445566778899aabbccddeeff";

    #[test]
    fn matches_the_published_examples() {
        assert_eq!(
            sign(SECRET, "POST", "/api/v1/reports", 1764000000, NONCE, br#"{"schema":1}"#),
            "c2abd0d2cdbd608391f54c2e8bcc9d2f3749b85040385a050a2041e81c9992b1"
        );
        assert_eq!(
            sign(SECRET, "GET", "/api/v1/collect-targets?mode=salt", 1764000000, NONCE, b""),
            "cdda2045e2f3db81ad8dc90e6725862b4f6355a4f815198482860df8c06132a9"
        );
    }

    #[test]
    fn header_round_trip_and_verification() {
        let body = br#"{"schema":1}"#;
        let header = authorization("k1", SECRET, "POST", "/api/v1/reports", 1764000000, NONCE, body);
        let parsed = parse_authorization(&header).expect("parses");
        assert_eq!(parsed.key_id, "k1");
        assert!(verify(SECRET, &parsed, "POST", "/api/v1/reports", body));
        assert!(!verify("wrong", &parsed, "POST", "/api/v1/reports", body));
        assert!(!verify(SECRET, &parsed, "POST", "/api/v1/reports", b"{}"));
        assert!(!verify(SECRET, &parsed, "POST", "/api/v1/reports?x=1", body));
    }

    #[test]
    fn malformed_headers_are_refused() {
        for bad in [
            "",
            "Bearer abc",
            "CMDB-HMAC-SHA256",
            "CMDB-HMAC-SHA256 KeyId=k, Timestamp=1, Nonce=00112233445566778899aabbccddeeff",
            "CMDB-HMAC-SHA256 KeyId=k, Timestamp=x, Nonce=00112233445566778899aabbccddeeff, Signature=00",
            "CMDB-HMAC-SHA256 KeyId=k, KeyId=k, Timestamp=1, Nonce=00112233445566778899aabbccddeeff, Signature=00",
            "CMDB-HMAC-SHA256 KeyId=k, Timestamp=1, Nonce=short, Signature=c2abd0d2cdbd608391f54c2e8bcc9d2f3749b85040385a050a2041e81c9992b1",
        ] {
            assert!(parse_authorization(bad).is_err(), "{bad:?}");
        }
    }
}
