//! Hostile input, case by case, against a system that requires tokens: every case gets its
//! exact answer (status and code, error frame, or close code), and right after it the node
//! still takes a normal chat and the victim's stored history is unchanged.

#![allow(clippy::unwrap_used)] // test code: a panic is a failed test

use std::time::{Duration, Instant};

use e2e::api::send_as;
use e2e::tokens::{self, required_env};
use e2e::{Event, Json, Stack, StackOptions, WsClient, upgrade};
use reqwest::Method;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

/// The owner of the victim session.
const OWNER: &str = "victim-owner";
/// The session every case tries to read, change or break.
const VICTIM: &str = "victim";

/// One REST case: what is sent, and the exact answer.
struct Rest {
    what: &'static str,
    method: Method,
    path: String,
    /// `Authorization` header value, if any.
    authorization: Option<String>,
    content_type: &'static str,
    body: Vec<u8>,
    status: u16,
    /// The error body's `code`; `None` for a success.
    code: Option<&'static str>,
}

fn rest(what: &'static str, method: Method, path: &str, token: Option<String>) -> Rest {
    Rest {
        what,
        method,
        path: path.to_owned(),
        authorization: token.map(|t| format!("Bearer {t}")),
        content_type: "application/json",
        body: Vec::new(),
        status: 200,
        code: None,
    }
}

impl Rest {
    fn json(mut self, body: &str) -> Self {
        self.body = body.as_bytes().to_vec();
        self
    }

    fn raw(mut self, body: Vec<u8>) -> Self {
        self.body = body;
        self
    }

    fn content_type(mut self, content_type: &'static str) -> Self {
        self.content_type = content_type;
        self
    }

    fn authorization(mut self, value: &str) -> Self {
        self.authorization = Some(value.to_owned());
        self
    }

    fn expect(mut self, status: u16, code: Option<&'static str>) -> Self {
        self.status = status;
        self.code = code;
        self
    }
}

/// What a WebSocket case expects.
enum Expect {
    /// An `error` frame with this code; the socket stays open.
    ErrorFrame(&'static str),
    /// A close frame with this code.
    Close(u16),
    /// A frame of this type.
    Frame(&'static str),
}

/// The system under attack, the victim's history as it must stay, and a counter of the
/// normal chats that prove the node still works.
struct Target {
    stack: Stack,
    victim_history: Json,
    probes: usize,
}

impl Target {
    async fn start() -> Target {
        let mut env = required_env();
        env.push(("WS_MAX_MESSAGE_BYTES", "2048".into()));
        let stack = Stack::start(StackOptions {
            stream_delay_ms: 1,
            env,
            ..StackOptions::default()
        })
        .await;
        let owner = tokens::valid(OWNER);
        let reply = send_as(
            Method::POST,
            &format!("{}/api/chat", stack.gateway(0)),
            Some(&owner),
            Some(json!({"session_id": VICTIM, "message": "my secret plans"})),
        )
        .await;
        assert_eq!(reply.status, 202, "{}", reply.body);
        let mut target = Target {
            stack,
            victim_history: Json::Null,
            probes: 0,
        };
        target.victim_history = target.settled_victim().await;
        target
    }

    async fn settled_victim(&self) -> Json {
        let url = format!("{}/api/history/{VICTIM}", self.stack.gateway(0));
        let owner = tokens::valid(OWNER);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let reply = send_as(Method::GET, &url, Some(&owner), None).await;
            assert_eq!(reply.status, 200);
            if reply.body["streaming"].is_null() {
                return reply.body;
            }
            assert!(Instant::now() < deadline, "the victim's answer never ended");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// After a case: a normal chat still works, and the victim's history is as it was.
    async fn still_fine(&mut self, what: &str) {
        self.probes += 1;
        let reply = send_as(
            Method::POST,
            &format!("{}/api/chat", self.stack.gateway(0)),
            Some(&tokens::valid("prober")),
            Some(json!({"session_id": format!("probe-{}", self.probes), "message": "ping"})),
        )
        .await;
        assert_eq!(reply.status, 202, "after {what}: {}", reply.body);
        assert_eq!(
            self.settled_victim().await,
            self.victim_history,
            "after {what}: the victim's history changed"
        );
    }

    async fn run_rest(&mut self, case: Rest) {
        let mut request = e2e::http()
            .request(
                case.method.clone(),
                format!("{}{}", self.stack.gateway(0), case.path),
            )
            .header("content-type", case.content_type)
            .body(case.body.clone());
        if let Some(authorization) = &case.authorization {
            request = request.header("authorization", authorization);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let body: Json = response.json().await.unwrap_or(Json::Null);
        assert_eq!(status, case.status, "{}: {body}", case.what);
        if let Some(code) = case.code {
            assert_eq!(body["code"], code, "{}: {body}", case.what);
            assert!(
                body["error"].as_str().is_some_and(|e| !e.is_empty()),
                "{}: no error text",
                case.what
            );
        }
        self.still_fine(case.what).await;
    }

    fn ws(&self, query: &str) -> String {
        format!("ws://{}/ws/chat?{query}", self.stack.gateways[0].addr)
    }

    /// A socket upgrade refused with `status` and `code`.
    async fn run_upgrade(
        &mut self,
        what: &str,
        query: &str,
        headers: &[(&'static str, &str)],
        status: u16,
        code: &str,
    ) {
        let (got, body) = upgrade(&self.ws(query), headers).await.refused();
        assert_eq!(
            (got, body["code"].as_str()),
            (status, Some(code)),
            "{what}: {body}"
        );
        self.still_fine(what).await;
    }

    /// A frame on an open socket of the prober's own session, and its answer.
    async fn run_frame(&mut self, what: &str, ws: &mut WsClient, frame: Message, expect: Expect) {
        ws.send(frame).await;
        match expect {
            Expect::ErrorFrame(code) => {
                let error = ws.frame_of("error").await;
                assert_eq!(error["code"], code, "{what}: {error}");
            }
            Expect::Frame(kind) => {
                let frame = ws.frame_of(kind).await;
                assert_eq!(frame["type"], kind, "{what}");
            }
            // Frames of an answer streaming in the socket's session may come first.
            Expect::Close(code) => loop {
                match ws.event().await {
                    Event::Frame(frame) if frame["type"] != "error" => {}
                    Event::Closed(Some(frame)) => {
                        assert_eq!(u16::from(frame.code), code, "{what}");
                        break;
                    }
                    other => panic!("{what}: expected close {code}, got {other:?}"),
                }
            },
        }
        self.still_fine(what).await;
    }
}

/// An upgrade case: what, the query, extra headers, the status and code expected.
type UpgradeCase = (
    &'static str,
    String,
    Vec<(&'static str, String)>,
    u16,
    &'static str,
);

/// A JSON value nested `depth` arrays deep.
fn nested(depth: usize) -> String {
    format!("{}{}", "[".repeat(depth), "]".repeat(depth))
}

/// Sixty-odd hostile inputs over REST and WebSocket, each answered exactly, none breaking the
/// node or touching another user's data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_inputs_get_exact_answers_and_change_nothing() {
    let mut target = Target::start().await;
    let mut cases = 0;
    let prober = || Some(tokens::valid("prober"));
    let intruder = || Some(tokens::valid("intruder"));
    let chat = |what, token: Option<String>, body: &str| {
        rest(what, Method::POST, "/api/chat", token).json(body)
    };
    let valid_chat = r#"{"session_id":"hostile-own","message":"hi"}"#;

    let rest_cases = vec![
        // Tokens.
        chat("no token", None, valid_chat).expect(401, Some("UNAUTHORIZED")),
        chat("garbage token", Some("garbage".into()), valid_chat).expect(401, Some("UNAUTHORIZED")),
        chat("expired token", Some(tokens::expired("prober")), valid_chat)
            .expect(401, Some("UNAUTHORIZED")),
        chat(
            "token not valid yet",
            Some(tokens::not_yet_valid("prober")),
            valid_chat,
        )
        .expect(401, Some("UNAUTHORIZED")),
        chat("forged token", Some(tokens::forged(OWNER)), valid_chat)
            .expect(401, Some("UNAUTHORIZED")),
        chat("alg none", Some(tokens::unsigned(OWNER)), valid_chat)
            .expect(401, Some("UNAUTHORIZED")),
        chat(
            "HS512 token",
            Some(tokens::wrong_algorithm(OWNER)),
            valid_chat,
        )
        .expect(401, Some("UNAUTHORIZED")),
        chat("subject not an id", Some(tokens::bad_subject()), valid_chat)
            .expect(401, Some("UNAUTHORIZED")),
        chat(
            "token without exp",
            Some(tokens::without_expiry(OWNER)),
            valid_chat,
        )
        .expect(401, Some("UNAUTHORIZED")),
        chat("basic auth", None, valid_chat)
            .authorization("Basic dmljdGltOnB3")
            .expect(401, Some("UNAUTHORIZED")),
        chat("10 KB token", Some("e".repeat(10_000)), valid_chat).expect(401, Some("UNAUTHORIZED")),
        chat(
            "token with a space",
            Some(format!("{} x", tokens::valid("prober"))),
            valid_chat,
        )
        .expect(401, Some("UNAUTHORIZED")),
        // Bodies.
        chat("truncated JSON", prober(), r#"{"session_id":"x","mess"#)
            .expect(400, Some("INVALID_JSON")),
        chat("not JSON", prober(), "hello there").expect(400, Some("INVALID_JSON")),
        chat("empty body", prober(), "").expect(400, Some("INVALID_JSON")),
        chat(
            "number for an id",
            prober(),
            r#"{"session_id":7,"message":"hi"}"#,
        )
        .expect(400, Some("BAD_REQUEST")),
        chat(
            "array for an id",
            prober(),
            r#"{"session_id":["a"],"message":"hi"}"#,
        )
        .expect(400, Some("BAD_REQUEST")),
        chat("no message", prober(), r#"{"session_id":"x"}"#).expect(400, Some("BAD_REQUEST")),
        chat("a JSON array", prober(), "[1,2,3]").expect(400, Some("BAD_REQUEST")),
        chat(
            "huge number",
            prober(),
            r#"{"session_id":"x","message":"hi","user_id":1e400}"#,
        )
        .expect(400, Some("INVALID_JSON")),
        chat(
            "empty message",
            prober(),
            r#"{"session_id":"x","message":""}"#,
        )
        .expect(400, Some("INVALID_MESSAGE")),
        chat(
            "blank message",
            prober(),
            r#"{"session_id":"x","message":" \n\t "}"#,
        )
        .expect(400, Some("INVALID_MESSAGE")),
        chat(
            "5001-character message",
            prober(),
            &format!(r#"{{"session_id":"x","message":"{}"}}"#, "a".repeat(5001)),
        )
        .expect(400, Some("INVALID_MESSAGE")),
        chat(
            "deep nesting",
            prober(),
            &format!(
                r#"{{"session_id":"x","message":"hi","extra":{}}}"#,
                nested(300)
            ),
        )
        .expect(400, Some("INVALID_JSON")),
        chat(
            "body over 64 KiB",
            prober(),
            &format!(r#"{{"message":"{}"}}"#, "a".repeat(70_000)),
        )
        .expect(413, Some("TOO_LARGE")),
        chat("text content type", prober(), valid_chat)
            .content_type("text/plain")
            .expect(400, Some("BAD_REQUEST")),
        chat("invalid UTF-8", prober(), "")
            .raw(b"{\"session_id\":\"x\",\"message\":\"\xff\xfe\"}".to_vec())
            .expect(400, Some("INVALID_JSON")),
        // Ids that could escape a Redis key, a path or a query.
        chat(
            "colon in a session id",
            prober(),
            r#"{"session_id":"a:b","message":"hi"}"#,
        )
        .expect(400, Some("INVALID_ID")),
        chat(
            "star session id",
            prober(),
            r#"{"session_id":"*","message":"hi"}"#,
        )
        .expect(400, Some("INVALID_ID")),
        chat(
            "path traversal",
            prober(),
            r#"{"session_id":"../etc/passwd","message":"hi"}"#,
        )
        .expect(400, Some("INVALID_ID")),
        chat(
            "65-character id",
            prober(),
            &format!(r#"{{"session_id":"{}","message":"hi"}}"#, "a".repeat(65)),
        )
        .expect(400, Some("INVALID_ID")),
        chat(
            "SQL injection",
            prober(),
            r#"{"session_id":"x' OR '1'='1","message":"hi"}"#,
        )
        .expect(400, Some("INVALID_ID")),
        chat(
            "Redis injection",
            prober(),
            r#"{"session_id":"victim\r\nFLUSHALL","message":"hi"}"#,
        )
        .expect(400, Some("INVALID_ID")),
        chat(
            "NUL in an id",
            prober(),
            r#"{"session_id":"vic\u0000tim","message":"hi"}"#,
        )
        .expect(400, Some("INVALID_ID")),
        chat(
            "non-ASCII id",
            prober(),
            r#"{"session_id":"vïctim","message":"hi"}"#,
        )
        .expect(400, Some("INVALID_ID")),
        rest(
            "colon in a history path",
            Method::GET,
            "/api/history/a:b",
            prober(),
        )
        .expect(400, Some("INVALID_ID")),
        rest(
            "encoded traversal",
            Method::GET,
            "/api/history/..%2F..%2Fetc",
            prober(),
        )
        .expect(400, Some("INVALID_ID")),
        rest(
            "star in a delete",
            Method::DELETE,
            "/api/history/*",
            prober(),
        )
        .expect(400, Some("INVALID_ID")),
        rest(
            "bad message id in a cancel",
            Method::POST,
            "/api/cancel",
            prober(),
        )
        .json(r#"{"session_id":"x","message_id":"*"}"#)
        .expect(400, Some("INVALID_ID")),
        rest(
            "bad user in the sessions list",
            Method::GET,
            "/api/sessions?user_id=a%3Ab",
            prober(),
        )
        .expect(400, Some("INVALID_ID")),
        // Another user's session, through every endpoint.
        rest(
            "read another's history",
            Method::GET,
            "/api/history/victim",
            intruder(),
        )
        .expect(403, Some("FORBIDDEN")),
        rest(
            "delete another's history",
            Method::DELETE,
            "/api/history/victim",
            intruder(),
        )
        .expect(403, Some("FORBIDDEN")),
        rest(
            "cancel in another's session",
            Method::POST,
            "/api/cancel",
            intruder(),
        )
        .json(r#"{"session_id":"victim","message_id":"m-1"}"#)
        .expect(403, Some("FORBIDDEN")),
        chat(
            "chat into another's session",
            intruder(),
            r#"{"session_id":"victim","message":"mine"}"#,
        )
        .expect(403, Some("FORBIDDEN")),
        rest(
            "list another's sessions",
            Method::GET,
            "/api/sessions?user_id=victim-owner",
            intruder(),
        )
        .expect(403, Some("FORBIDDEN")),
        rest(
            "read a history without a token",
            Method::GET,
            "/api/history/victim",
            None,
        )
        .expect(401, Some("UNAUTHORIZED")),
        chat(
            "a body naming another user",
            intruder(),
            r#"{"session_id":"hostile-own","message":"hi","user_id":"victim-owner"}"#,
        )
        .expect(202, None),
    ];
    for case in rest_cases {
        cases += 1;
        target.run_rest(case).await;
    }

    // Upgrades.
    let good = tokens::valid("prober");
    let owner_origin = format!("http://{}", target.stack.gateways[0].addr);
    let upgrades: Vec<UpgradeCase> = vec![
        (
            "no session id",
            format!("token={good}"),
            vec![],
            400,
            "INVALID_ID",
        ),
        (
            "bad session id",
            format!("session_id=a:b&token={good}"),
            vec![],
            400,
            "INVALID_ID",
        ),
        (
            "bad user id",
            format!("session_id=x&user_id=a%20b&token={good}"),
            vec![],
            400,
            "INVALID_ID",
        ),
        (
            "garbage query token",
            "session_id=x&token=garbage".into(),
            vec![],
            401,
            "UNAUTHORIZED",
        ),
        (
            "expired query token",
            format!("session_id=x&token={}", tokens::expired("prober")),
            vec![],
            401,
            "UNAUTHORIZED",
        ),
        (
            "alg none query token",
            format!("session_id=x&token={}", tokens::unsigned("prober")),
            vec![],
            401,
            "UNAUTHORIZED",
        ),
        (
            "another's session by query token",
            format!("session_id=victim&token={}", tokens::valid("intruder")),
            vec![],
            403,
            "FORBIDDEN",
        ),
        (
            "a foreign origin",
            format!("session_id=x&token={good}"),
            vec![("origin", "https://evil.example".to_owned())],
            403,
            "FORBIDDEN",
        ),
        (
            "a null origin",
            format!("session_id=x&token={good}"),
            vec![("origin", "null".to_owned())],
            403,
            "FORBIDDEN",
        ),
    ];
    for (what, query, headers, status, code) in upgrades {
        cases += 1;
        let headers: Vec<(&'static str, &str)> =
            headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        target
            .run_upgrade(what, &query, &headers, status, code)
            .await;
    }
    // The node's own origin is let in.
    upgrade(
        &target.ws(&format!("session_id=x&token={good}")),
        &[("origin", &owner_origin)],
    )
    .await
    .opened();

    // Auth frames.
    for (what, first, code) in [
        (
            "forged auth frame",
            json!({"type": "auth", "token": tokens::forged("prober")}),
            4401,
        ),
        (
            "alg none auth frame",
            json!({"type": "auth", "token": tokens::unsigned("prober")}),
            4401,
        ),
        (
            "a chat before auth",
            json!({"type": "chat", "message": "hi"}),
            4401,
        ),
        (
            "another's session by auth frame",
            json!({"type": "auth", "token": tokens::valid("intruder")}),
            4403,
        ),
    ] {
        cases += 1;
        let session = if code == 4403 { VICTIM } else { "hostile-own" };
        let mut ws = upgrade(&target.ws(&format!("session_id={session}")), &[])
            .await
            .opened();
        target
            .run_frame(
                what,
                &mut ws,
                Message::text(first.to_string()),
                Expect::Close(code),
            )
            .await;
    }

    // Frames on an open, authenticated socket of the prober's own session.
    let (mut ws, _, _) =
        WsClient::open(&target.ws(&format!("session_id=hostile-frames&token={good}"))).await;
    let frames: Vec<(&str, Message, Expect)> = vec![
        (
            "text that is not JSON",
            Message::text("not json"),
            Expect::ErrorFrame("INVALID_JSON"),
        ),
        (
            "truncated frame",
            Message::text(r#"{"type":"ch"#),
            Expect::ErrorFrame("INVALID_JSON"),
        ),
        (
            "unknown type",
            Message::text(r#"{"type":"dance"}"#),
            Expect::ErrorFrame("UNKNOWN_TYPE"),
        ),
        (
            "missing fields",
            Message::text(r#"{"type":"chat"}"#),
            Expect::ErrorFrame("BAD_REQUEST"),
        ),
        (
            "a JSON array",
            Message::text("[1,2]"),
            Expect::ErrorFrame("BAD_REQUEST"),
        ),
        (
            "a number type",
            Message::text(r#"{"type":7}"#),
            Expect::ErrorFrame("BAD_REQUEST"),
        ),
        (
            "wrong field type",
            Message::text(r#"{"type":"cancel","messageId":7}"#),
            Expect::ErrorFrame("BAD_REQUEST"),
        ),
        (
            "negative index",
            Message::text(r#"{"type":"resume","messageId":"m","fromIndex":-1}"#),
            Expect::ErrorFrame("BAD_REQUEST"),
        ),
        (
            "huge index",
            Message::text(r#"{"type":"resume","messageId":"m","fromIndex":1e30}"#),
            Expect::ErrorFrame("BAD_REQUEST"),
        ),
        (
            "blank chat",
            Message::text(r#"{"type":"chat","message":"   "}"#),
            Expect::ErrorFrame("INVALID_MESSAGE"),
        ),
        (
            "bad message id",
            Message::text(r#"{"type":"cancel","messageId":"a:b"}"#),
            Expect::ErrorFrame("INVALID_ID"),
        ),
        (
            "NUL in a message id",
            Message::text(r#"{"type":"cancel","messageId":"a\u0000b"}"#),
            Expect::ErrorFrame("INVALID_ID"),
        ),
        (
            "deep nesting",
            Message::text(format!(r#"{{"type":"ping","extra":{}}}"#, nested(300))),
            Expect::ErrorFrame("INVALID_JSON"),
        ),
        (
            "nested, within the bound",
            Message::text(format!(r#"{{"type":"ping","extra":{}}}"#, nested(100))),
            Expect::Frame("pong"),
        ),
        (
            "binary frame",
            Message::binary(vec![0xff, 0xfe, 0x00]),
            Expect::ErrorFrame("BINARY_NOT_SUPPORTED"),
        ),
        (
            "just over the frame limit",
            Message::text(format!(
                r#"{{"type":"chat","message":"{}"}}"#,
                "a".repeat(2049)
            )),
            Expect::ErrorFrame("TOO_LARGE"),
        ),
        (
            "just under the frame limit",
            Message::text(format!(
                r#"{{"type":"cancel","messageId":"{}"}}"#,
                "a".repeat(2000)
            )),
            Expect::ErrorFrame("INVALID_ID"),
        ),
        (
            "a chat naming another session",
            Message::text(r#"{"type":"chat","message":"hi","sessionId":"victim"}"#),
            Expect::Frame("accepted"),
        ),
        (
            "an auth frame once open",
            Message::text(format!(
                r#"{{"type":"auth","token":"{}"}}"#,
                tokens::valid(OWNER)
            )),
            Expect::Frame("pong"),
        ),
        (
            "over the hard limit",
            Message::text("x".repeat(1024 * 1024 + 1)),
            Expect::Close(1009),
        ),
    ];
    for (what, frame, expect) in frames {
        cases += 1;
        // The auth frame has no answer; a ping after it shows the socket still serves.
        let ping_after = matches!(expect, Expect::Frame("pong"));
        if ping_after {
            ws.send(frame).await;
            target
                .run_frame(what, &mut ws, Message::text(r#"{"type":"ping"}"#), expect)
                .await;
        } else {
            target.run_frame(what, &mut ws, frame, expect).await;
        }
    }
    assert!(cases >= 60, "only {cases} cases");
}
