//! Validation of everything a client sends before it may touch Redis or SQL.
//!
//! Ids become parts of Redis keys (`chat:history:{sid}`), so an id that could contain `:`, `*`,
//! `/` or whitespace is rejected here, once, and the rest of the code only ever sees the
//! validated newtypes.

use std::borrow::Borrow;
use std::fmt;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::ErrorCode;

/// Longest id accepted, in characters.
pub const MAX_ID_LEN: usize = 64;
/// Longest chat message accepted, in characters, after trimming.
pub const MAX_MESSAGE_CHARS: usize = 5000;

/// Why an input was refused; the text is meant for the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidInput {
    #[error("{field} must be 1 to {MAX_ID_LEN} characters of A-Z, a-z, 0-9, '_' or '-'")]
    Id { field: &'static str },
    #[error("message must not be empty")]
    EmptyMessage,
    #[error("message is {chars} characters long; the limit is {MAX_MESSAGE_CHARS}")]
    MessageTooLong { chars: usize },
}

impl InvalidInput {
    /// The error code a client is told.
    pub fn code(&self) -> ErrorCode {
        match self {
            InvalidInput::Id { .. } => ErrorCode::InvalidId,
            InvalidInput::EmptyMessage | InvalidInput::MessageTooLong { .. } => {
                ErrorCode::InvalidMessage
            }
        }
    }
}

fn is_id(value: &str) -> bool {
    (1..=MAX_ID_LEN).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $field:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Accepts 1..=64 characters of `[A-Za-z0-9_-]`.
            pub fn parse(value: impl Into<String>) -> Result<Self, InvalidInput> {
                let value = value.into();
                if is_id(&value) {
                    Ok(Self(value))
                } else {
                    Err(InvalidInput::Id { field: $field })
                }
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }

            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        /// Lets maps keyed by the id be looked up with a plain `&str` (a channel name's tail,
        /// say) without building an id first.
        impl Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = InvalidInput;
            fn try_from(value: String) -> Result<Self, InvalidInput> {
                Self::parse(value)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let raw = String::deserialize(d)?;
                Self::parse(raw).map_err(serde::de::Error::custom)
            }
        }
    };
}

id_type!(
    /// A conversation's id, safe to embed in a Redis key.
    SessionId,
    "session_id"
);
id_type!(
    /// A message's id (the server makes UUIDs; clients only echo them back).
    MessageId,
    "message_id"
);
id_type!(
    /// The id of the person chatting. Authentication arrives in a later issue; until then it is
    /// whatever the client says, within the id alphabet.
    UserId,
    "user_id"
);

impl MessageId {
    /// A fresh random id (UUID v4 text).
    pub fn random() -> Self {
        Self(uuid::Uuid::new_v4().to_string())
    }
}

/// The user id used when a client does not send one (the seed's default).
pub const DEFAULT_USER_ID: &str = "default_user";

impl Default for UserId {
    /// [`DEFAULT_USER_ID`].
    fn default() -> Self {
        Self(DEFAULT_USER_ID.to_owned())
    }
}

/// An input that arrives as loose JSON and is checked field by field on the way in.
///
/// `Raw` is what a client may send (plain strings); [`Validated::validate`] turns it into the
/// typed form, the only one the rest of the code sees. Keeping the two apart, instead of failing
/// inside the deserializer, lets each refusal keep its own [`InvalidInput`] (and so its own
/// error code); the HTTP layer's `Valid` extractor and [`crate::ClientFrame::parse`] both work
/// this way.
pub trait Validated: Sized {
    /// The shape on the wire.
    type Raw: DeserializeOwned;

    /// Checks every field, in the order a client would fix them.
    fn validate(raw: Self::Raw) -> Result<Self, InvalidInput>;
}

/// Deepest nesting of arrays and objects accepted in a frame or body. Nothing this system
/// reads nests beyond 3; the bound keeps hostile input from costing stack or time.
pub const MAX_JSON_DEPTH: usize = 32;

/// Whether `json` nests arrays and objects at most `max` deep. A single pass over the bytes,
/// skipping strings; it says nothing about validity (the parser does).
pub fn json_depth_within(json: &[u8], max: usize) -> bool {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &byte in json {
        if in_string {
            match (escaped, byte) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return false;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    true
}

/// Trims a chat message and checks its length: 1..=5000 characters after trimming.
pub fn chat_text(raw: &str) -> Result<&str, InvalidInput> {
    let text = raw.trim();
    if text.is_empty() {
        return Err(InvalidInput::EmptyMessage);
    }
    let chars = text.chars().count();
    if chars > MAX_MESSAGE_CHARS {
        return Err(InvalidInput::MessageTooLong { chars });
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ids that could escape a Redis key or collide with another key are refused.
    #[test]
    fn session_ids_outside_the_alphabet_are_refused() {
        for bad in ["", "a:b", "*", "../x", "a b", "é", "x/y", &"a".repeat(65)] {
            assert!(SessionId::parse(bad).is_err(), "{bad:?} accepted");
        }
        for good in [
            "a",
            "A-z_09",
            &"a".repeat(64),
            "550e8400-e29b-41d4-a716-446655440000",
        ] {
            assert!(SessionId::parse(good).is_ok(), "{good:?} refused");
        }
    }

    /// Ids are validated when deserialized, so a bad id never reaches a handler.
    #[test]
    fn deserializing_a_bad_id_fails() {
        assert!(serde_json::from_str::<SessionId>("\"a:b\"").is_err());
        assert_eq!(
            serde_json::from_str::<SessionId>("\"ok-1\"")
                .unwrap()
                .as_str(),
            "ok-1"
        );
    }

    /// Nesting is measured outside strings only.
    #[test]
    fn json_depth_is_measured_outside_strings() {
        assert!(json_depth_within(br#"{"a":[1,{"b":2}]}"#, 3));
        assert!(!json_depth_within(br#"{"a":[1,{"b":2}]}"#, 2));
        assert!(json_depth_within(br#"{"a":"[[[[[[\"[["}"#, 1));
        let deep = format!("{}{}", "[".repeat(33), "]".repeat(33));
        assert!(!json_depth_within(deep.as_bytes(), MAX_JSON_DEPTH));
    }

    /// Messages are trimmed, and the length limit counts characters, not bytes.
    #[test]
    fn chat_text_is_trimmed_and_bounded_in_characters() {
        assert_eq!(chat_text("  hi \n").unwrap(), "hi");
        assert_eq!(chat_text(" \t\n "), Err(InvalidInput::EmptyMessage));
        assert!(chat_text(&"é".repeat(5000)).is_ok());
        assert_eq!(
            chat_text(&"a".repeat(5001)),
            Err(InvalidInput::MessageTooLong { chars: 5001 })
        );
    }
}
