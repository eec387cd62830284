//! Tokens for tests: good ones, and every kind of bad one.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;

/// The secret the tests' required-mode nodes use.
pub const SECRET: &str = "the-tests-secret-which-is-long-enough-1234";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn sign(claims: &serde_json::Value, secret: &str, algorithm: Algorithm) -> String {
    jsonwebtoken::encode(
        &Header::new(algorithm),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()).expect("key"),
    )
    .expect("signed token")
}

/// A valid token of `user` for an hour.
pub fn valid(user: &str) -> String {
    sign(
        &json!({"sub": user, "exp": now() + 3600, "iat": now()}),
        SECRET,
        Algorithm::HS256,
    )
}

/// A token of `user` that expired a minute ago.
pub fn expired(user: &str) -> String {
    sign(
        &json!({"sub": user, "exp": now() - 60, "iat": now() - 120}),
        SECRET,
        Algorithm::HS256,
    )
}

/// A token of `user` not valid for another five minutes.
pub fn not_yet_valid(user: &str) -> String {
    sign(
        &json!({"sub": user, "exp": now() + 3600, "nbf": now() + 300}),
        SECRET,
        Algorithm::HS256,
    )
}

/// A token of `user` signed with another secret.
pub fn forged(user: &str) -> String {
    sign(
        &json!({"sub": user, "exp": now() + 3600}),
        "not-the-secret-but-just-as-long-as-it-1234",
        Algorithm::HS256,
    )
}

/// A token of `user` signed with HS512 (the nodes take HS256 only).
pub fn wrong_algorithm(user: &str) -> String {
    sign(
        &json!({"sub": user, "exp": now() + 3600}),
        SECRET,
        Algorithm::HS512,
    )
}

/// An unsigned token of `user` (`alg: none`).
pub fn unsigned(user: &str) -> String {
    let part = |value: serde_json::Value| URL_SAFE_NO_PAD.encode(value.to_string());
    format!(
        "{}.{}.",
        part(json!({"alg": "none", "typ": "JWT"})),
        part(json!({"sub": user, "exp": now() + 3600}))
    )
}

/// A valid signature over a subject that is not a user id.
pub fn bad_subject() -> String {
    sign(
        &json!({"sub": "a:b*", "exp": now() + 3600}),
        SECRET,
        Algorithm::HS256,
    )
}

/// A valid signature without `exp`.
pub fn without_expiry(user: &str) -> String {
    sign(&json!({"sub": user}), SECRET, Algorithm::HS256)
}

/// The variables of a node that requires tokens (with the tests' secret).
pub fn required_env() -> Vec<(&'static str, String)> {
    vec![
        ("AUTH_MODE", "required".into()),
        ("JWT_SECRET", SECRET.into()),
        ("CORS_ALLOWED_ORIGINS", "https://chat.example".into()),
    ]
}
