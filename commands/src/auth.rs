//! Bearer tokens: 256 random bits, shown once, stored only as a SHA-256 hash.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};

/// Bytes of randomness in a token.
pub const TOKEN_BYTES: usize = 32;

/// A fresh token's raw bytes.
pub fn new_token() -> [u8; TOKEN_BYTES] {
    let mut bytes = [0u8; TOKEN_BYTES];
    rand::rng().fill_bytes(&mut bytes);
    bytes
}

/// The text form handed to the client.
pub fn encode_token(bytes: &[u8; TOKEN_BYTES]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The raw bytes of a token in text form, if it is well formed.
pub fn decode_token(text: &str) -> Option<[u8; TOKEN_BYTES]> {
    if text.len() != 43 {
        return None;
    }
    URL_SAFE_NO_PAD.decode(text).ok()?.try_into().ok()
}

/// The stored form of a token: hex SHA-256 of its raw bytes.
pub fn hash_token(bytes: &[u8; TOKEN_BYTES]) -> String {
    hex(&Sha256::digest(bytes))
}

/// The claim under which a token's owner is stored.
pub fn token_claim_key(token_hash: &str) -> String {
    format!("token:{token_hash}")
}

/// The claim that marks a token revoked. It shares the `token:` prefix so that every function
/// allowed to look a token up (IAM leading keys `token:*`) can also see its revocation.
pub fn revoked_claim_key(token_hash: &str) -> String {
    format!("token:{token_hash}:revoked")
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// XORs a token with a key stream derived from `secret`, so a token can be kept for an
/// idempotent replay without being stored readable: only a caller who knows the
/// idempotency key (never stored in clear) can unwrap it.
pub fn wrap_token(bytes: &[u8; TOKEN_BYTES], secret: &str) -> [u8; TOKEN_BYTES] {
    let mut hasher = Sha256::new();
    hasher.update(b"messaging token wrap\0");
    hasher.update(secret.as_bytes());
    let pad = hasher.finalize();
    let mut out = [0u8; TOKEN_BYTES];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = bytes[i] ^ pad[i];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_round_trip() {
        let a = new_token();
        let b = new_token();
        assert_ne!(a, b);
        assert_eq!(decode_token(&encode_token(&a)), Some(a));
        assert_eq!(hash_token(&a).len(), 64);
    }

    #[test]
    fn a_revocation_is_a_separate_claim_under_the_token_prefix() {
        let hash = hash_token(&new_token());
        let revoked = revoked_claim_key(&hash);
        assert_ne!(revoked, token_claim_key(&hash));
        assert!(revoked.starts_with("token:"));
        assert!(revoked.starts_with(&token_claim_key(&hash)));
    }

    #[test]
    fn malformed_tokens_are_refused() {
        assert_eq!(decode_token(""), None);
        assert_eq!(decode_token("short"), None);
        assert_eq!(decode_token(&"!".repeat(43)), None);
    }

    #[test]
    fn wrapping_twice_with_the_same_secret_unwraps() {
        let token = new_token();
        let wrapped = wrap_token(&token, "key-1");
        assert_ne!(wrapped, token);
        assert_eq!(wrap_token(&wrapped, "key-1"), token);
        assert_ne!(wrap_token(&wrapped, "key-2"), token);
    }
}
