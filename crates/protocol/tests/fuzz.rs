//! Property tests of everything that parses client input: whatever arrives, parsing never
//! panics, and what it accepts obeys the rules. CI runs each property with proptest's default
//! budget (256 cases); `PROPTEST_CASES=100000 cargo test -p protocol --test fuzz` runs longer.

use proptest::prelude::*;
use protocol::frames::peek_live_frame;
use protocol::rest::{CancelRequest, ChatRequest, RawCancelRequest, RawChatRequest};
use protocol::validate::{MAX_JSON_DEPTH, MAX_MESSAGE_CHARS, json_depth_within};
use protocol::{ClientFrame, MessageId, Validated};

/// JSON values of any shape, up to a modest size.
fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>().prop_map(serde_json::Value::from),
        ".{0,40}".prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(8, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(serde_json::Value::from),
            prop::collection::hash_map("[a-zA-Z]{1,10}", inner, 0..8)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Objects that look like frames: a known or unknown type and arbitrary fields.
fn frame_like() -> impl Strategy<Value = String> {
    (
        prop_oneof![
            Just("ping"),
            Just("auth"),
            Just("chat"),
            Just("cancel"),
            Just("resume"),
            Just("dance")
        ],
        prop::collection::hash_map(
            prop_oneof![
                Just("message".to_owned()),
                Just("messageId".to_owned()),
                Just("fromIndex".to_owned()),
                Just("token".to_owned()),
                "[a-z]{1,8}"
            ],
            json_value(),
            0..4,
        ),
    )
        .prop_map(|(kind, fields)| {
            let mut object: serde_json::Map<String, serde_json::Value> =
                fields.into_iter().collect();
            object.insert("type".into(), kind.into());
            serde_json::Value::Object(object).to_string()
        })
}

/// A frame the parser accepted obeys the rules: ids in the alphabet, a chat's text trimmed,
/// not empty and within bounds.
fn check_accepted(frame: &ClientFrame) -> Result<(), TestCaseError> {
    match frame {
        ClientFrame::Chat { message } => {
            prop_assert_eq!(message.trim(), message.as_str());
            prop_assert!(!message.is_empty());
            prop_assert!(message.chars().count() <= MAX_MESSAGE_CHARS);
        }
        ClientFrame::Cancel { message_id } | ClientFrame::Resume { message_id, .. } => {
            prop_assert!(MessageId::parse(message_id.as_str()).is_ok());
        }
        ClientFrame::Ping | ClientFrame::Auth { .. } => {}
    }
    Ok(())
}

proptest! {
    /// Any text at all: parsing never panics; what it accepts obeys the rules.
    #[test]
    fn client_frames_from_any_text(text in ".{0,300}") {
        if let Ok(frame) = ClientFrame::parse(&text) {
            check_accepted(&frame)?;
        }
    }

    /// Frame-shaped JSON with arbitrary fields: never panics, accepted frames obey the rules.
    #[test]
    fn client_frames_from_frame_like_json(text in frame_like()) {
        if let Ok(frame) = ClientFrame::parse(&text) {
            check_accepted(&frame)?;
        }
    }

    /// Every valid frame survives a round trip through its JSON.
    #[test]
    fn valid_frames_round_trip(
        message in "[a-zA-Z0-9 ]{0,40}[a-zA-Z0-9]",
        id in "[A-Za-z0-9_-]{1,64}",
        from_index in any::<u32>(),
    ) {
        let id = MessageId::parse(id).unwrap();
        for frame in [
            ClientFrame::Ping,
            ClientFrame::Chat { message: message.trim().to_owned() },
            ClientFrame::Cancel { message_id: id.clone() },
            ClientFrame::Resume { message_id: id.clone(), from_index },
        ] {
            let json = serde_json::to_string(&frame).unwrap();
            prop_assert_eq!(ClientFrame::parse(&json), Ok(frame));
        }
    }

    /// Chat and cancel bodies with arbitrary strings: validation never panics, and what it
    /// accepts obeys the rules.
    #[test]
    fn rest_bodies_from_any_strings(
        session in ".{0,80}",
        message in ".{0,200}",
        user in ".{0,80}",
        message_id in ".{0,80}",
    ) {
        let raw = RawChatRequest { session_id: session.clone(), message, user_id: user };
        if let Ok(chat) = ChatRequest::validate(raw) {
            prop_assert!(!chat.message.is_empty());
            prop_assert_eq!(chat.message.trim(), chat.message.as_str());
        }
        let _ = CancelRequest::validate(RawCancelRequest { session_id: session, message_id });
    }

    /// REST bodies from arbitrary JSON: deserializing never panics.
    #[test]
    fn rest_bodies_from_any_json(value in json_value()) {
        let _ = serde_json::from_value::<ChatRequest>(value.clone());
        let _ = serde_json::from_value::<CancelRequest>(value);
    }

    /// The gateway's peek at published frames never panics on any bytes.
    #[test]
    fn peeking_any_bytes(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let _ = peek_live_frame(&bytes);
    }

    /// The depth bound agrees with the nesting actually built.
    #[test]
    fn depth_bound_matches_nesting(depth in 0usize..80, inner in ".{0,20}") {
        let text = format!(
            "{}{}{}",
            "[".repeat(depth),
            serde_json::Value::from(inner),
            "]".repeat(depth)
        );
        prop_assert_eq!(json_depth_within(text.as_bytes(), MAX_JSON_DEPTH), depth <= MAX_JSON_DEPTH);
    }
}
