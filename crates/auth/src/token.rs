//! [`Authenticator`]: verifies and mints the node's tokens.

use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, errors::ErrorKind};
use protocol::UserId;
use serde::{Deserialize, Serialize};

use crate::config::{AllowedOrigins, AuthConfig, AuthMode};

/// Clock skew tolerated on `exp` and `nbf`, in seconds.
pub const LEEWAY_SECS: u64 = 5;
/// Longest token looked at; a JWT of this system is a few hundred bytes.
const MAX_TOKEN_BYTES: usize = 4096;

/// Why a token was refused. The texts are fit for the client (they say nothing of the secret).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("a token is required")]
    Missing,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token's subject is not a valid user id")]
    BadSubject,
    #[error("the token is not valid")]
    Invalid,
}

/// What a token says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user id.
    pub sub: String,
    /// Expiry, seconds since the epoch.
    pub exp: u64,
    /// When it was issued, seconds since the epoch (optional in the tokens accepted).
    #[serde(default)]
    pub iat: u64,
}

/// Checks and makes tokens with the node's secret. Cheap to clone.
#[derive(Clone)]
pub struct Authenticator {
    mode: AuthMode,
    origins: AllowedOrigins,
    encoding: EncodingKey,
    /// The current secret's key, then the previous one's while rotating.
    decoding: Vec<DecodingKey>,
    validation: Validation,
    lifetime_secs: u64,
}

/// The secret cannot sign (it is empty).
#[derive(Debug, thiserror::Error)]
#[error("JWT_SECRET cannot be used as a key: {0}")]
pub struct KeyError(String);

impl Authenticator {
    pub fn new(config: &AuthConfig) -> Result<Self, KeyError> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = LEEWAY_SECS;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "sub"]);
        let key_error = |e: jsonwebtoken::errors::Error| KeyError(e.to_string());
        let decoding = std::iter::once(&config.secret)
            .chain(config.previous_secret.as_ref())
            .map(|secret| DecodingKey::from_secret(secret.expose()).map_err(key_error))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            mode: config.mode,
            origins: config.allowed_origins.clone(),
            encoding: EncodingKey::from_secret(config.secret.expose()).map_err(key_error)?,
            decoding,
            validation,
            lifetime_secs: config.expiration.as_secs().max(1),
        })
    }

    pub fn mode(&self) -> AuthMode {
        self.mode
    }

    /// The browser origins that may call the node (`CORS_ALLOWED_ORIGINS`).
    pub fn allowed_origins(&self) -> &AllowedOrigins {
        &self.origins
    }

    /// The user `token` names, when it is valid.
    pub fn verify(&self, token: &str) -> Result<UserId, AuthError> {
        let token = token.trim();
        if token.is_empty() {
            return Err(AuthError::Missing);
        }
        if token.len() > MAX_TOKEN_BYTES {
            return Err(AuthError::Invalid);
        }
        let mut refusal = AuthError::Invalid;
        for key in &self.decoding {
            match jsonwebtoken::decode::<Claims>(token, key, &self.validation) {
                Ok(data) => {
                    return UserId::parse(data.claims.sub).map_err(|_| AuthError::BadSubject);
                }
                // Signed with this key, but refused: no other key makes it right.
                Err(e) if *e.kind() == ErrorKind::ExpiredSignature => {
                    return Err(AuthError::Expired);
                }
                Err(e) if *e.kind() == ErrorKind::ImmatureSignature => {
                    return Err(AuthError::NotYetValid);
                }
                Err(_) => refusal = AuthError::Invalid,
            }
        }
        Err(refusal)
    }

    /// A token for `user`, valid for `JWT_EXPIRATION_MS`.
    pub fn mint(&self, user: &UserId) -> String {
        self.mint_for(user, self.lifetime_secs)
    }

    /// A token for `user`, valid for `lifetime_secs` (a gateway vouching for its caller to an
    /// AI node uses a short one).
    pub fn mint_for(&self, user: &UserId, lifetime_secs: u64) -> String {
        let now = now_secs();
        let claims = Claims {
            sub: user.to_string(),
            exp: now + lifetime_secs,
            iat: now,
        };
        // HS256 with a secret key cannot fail to sign.
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .unwrap_or_default()
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use proptest::prelude::*;

    fn auth(secret: &str) -> Authenticator {
        Authenticator::new(&AuthConfig {
            mode: AuthMode::Required,
            secret: Secret::new(secret),
            previous_secret: None,
            expiration: std::time::Duration::from_secs(3600),
            allowed_origins: crate::AllowedOrigins::Any,
        })
        .unwrap()
    }

    fn sign(claims: &serde_json::Value, secret: &str, alg: Algorithm) -> String {
        jsonwebtoken::encode(
            &Header::new(alg),
            claims,
            &EncodingKey::from_secret(secret.as_bytes()).unwrap(),
        )
        .unwrap()
    }

    const SECRET: &str = "a-secret-for-the-tests-of-at-least-32-bytes";

    /// A minted token verifies to its user; expired, not-yet-valid, wrong-secret, wrong
    /// algorithm, `alg: none`, bad-subject and exp-less tokens are refused with their reason.
    #[test]
    fn tokens_are_checked_for_signature_algorithm_time_and_subject() {
        let auth = auth(SECRET);
        let alice = UserId::parse("alice").unwrap();
        assert_eq!(auth.verify(&auth.mint(&alice)), Ok(alice));
        let now = now_secs();
        let claims = |sub: &str, exp: u64| serde_json::json!({"sub": sub, "exp": exp, "iat": now});
        let expired = sign(&claims("alice", now - 60), SECRET, Algorithm::HS256);
        assert_eq!(auth.verify(&expired), Err(AuthError::Expired));
        let within_leeway = sign(&claims("alice", now - 2), SECRET, Algorithm::HS256);
        assert!(auth.verify(&within_leeway).is_ok());
        let early = sign(
            &serde_json::json!({"sub": "alice", "exp": now + 600, "nbf": now + 300}),
            SECRET,
            Algorithm::HS256,
        );
        assert_eq!(auth.verify(&early), Err(AuthError::NotYetValid));
        let forged = sign(
            &claims("alice", now + 60),
            "another-secret-of-enough-length!!",
            Algorithm::HS256,
        );
        assert_eq!(auth.verify(&forged), Err(AuthError::Invalid));
        let hs512 = sign(&claims("alice", now + 60), SECRET, Algorithm::HS512);
        assert_eq!(auth.verify(&hs512), Err(AuthError::Invalid));
        let bad_sub = sign(&claims("a:b", now + 60), SECRET, Algorithm::HS256);
        assert_eq!(auth.verify(&bad_sub), Err(AuthError::BadSubject));
        let no_exp = sign(
            &serde_json::json!({"sub": "alice"}),
            SECRET,
            Algorithm::HS256,
        );
        assert_eq!(auth.verify(&no_exp), Err(AuthError::Invalid));
        // alg: none, unsigned.
        let none = format!(
            "{}.{}.",
            b64(r#"{"alg":"none","typ":"JWT"}"#),
            b64(&claims("alice", now + 60).to_string())
        );
        assert_eq!(auth.verify(&none), Err(AuthError::Invalid));
        assert_eq!(auth.verify(""), Err(AuthError::Missing));
        assert_eq!(auth.verify(&"a".repeat(10_000)), Err(AuthError::Invalid));
    }

    fn b64(text: &str) -> String {
        URL_SAFE_NO_PAD.encode(text)
    }

    /// While the secret rotates, tokens of the previous secret are still accepted; new tokens
    /// are signed with the current one.
    #[test]
    fn the_previous_secret_is_accepted_while_rotating() {
        let old = auth(SECRET);
        let alice = UserId::parse("alice").unwrap();
        let old_token = old.mint(&alice);
        let rotating = Authenticator::new(&AuthConfig {
            mode: AuthMode::Required,
            secret: Secret::new("the-new-secret-that-replaces-the-old-one"),
            previous_secret: Some(Secret::new(SECRET)),
            expiration: std::time::Duration::from_secs(3600),
            allowed_origins: crate::AllowedOrigins::Any,
        })
        .unwrap();
        assert_eq!(rotating.verify(&old_token), Ok(alice.clone()));
        let new_token = rotating.mint(&alice);
        assert_eq!(rotating.verify(&new_token), Ok(alice));
        assert_eq!(old.verify(&new_token), Err(AuthError::Invalid));
    }

    proptest! {
        /// Whatever string arrives as a token, verifying it never panics, and never accepts it.
        #[test]
        fn arbitrary_strings_are_never_accepted(token in ".{0,600}") {
            prop_assert!(auth(SECRET).verify(&token).is_err());
        }

        /// A minted token with any one byte changed is refused (or still names its user, when
        /// the change only touched what base64 ignores).
        #[test]
        fn a_tampered_token_is_refused(user in "[A-Za-z0-9_-]{1,64}", at in 0usize..400, byte in any::<u8>()) {
            let auth = auth(SECRET);
            let user = UserId::parse(user).unwrap();
            let token = auth.mint(&user);
            let mut bytes = token.clone().into_bytes();
            let at = at % bytes.len();
            prop_assume!(bytes[at] != byte);
            bytes[at] = byte;
            let tampered = String::from_utf8_lossy(&bytes).into_owned();
            if let Ok(got) = auth.verify(&tampered) {
                prop_assert_eq!(got, user);
            }
        }
    }
}
