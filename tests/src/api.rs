//! The REST calls tests make, with the status checks they all repeat.

use serde_json::json;

use crate::Json;
use crate::stack::http;

/// POSTs `body` to `url`: (status, JSON body or null).
pub async fn post_json(url: &str, body: Json) -> (u16, Json) {
    let response = http()
        .post(url)
        .json(&body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("POST {url}: {e}"));
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Json::Null))
}

/// `POST {base}/api/chat` as `user`: (status, body).
pub async fn try_chat_as(base: &str, session: &str, message: &str, user: &str) -> (u16, Json) {
    post_json(
        &format!("{base}/api/chat"),
        json!({"session_id": session, "message": message, "user_id": user}),
    )
    .await
}

/// `POST {base}/api/chat`; panics unless it is accepted (202). Returns the `ChatAccepted` body.
pub async fn chat(base: &str, session: &str, message: &str) -> Json {
    chat_as(base, session, message, "tester").await
}

/// [`chat`] as `user`.
pub async fn chat_as(base: &str, session: &str, message: &str, user: &str) -> Json {
    let (status, body) = try_chat_as(base, session, message, user).await;
    assert_eq!(status, 202, "chat in {session} not accepted: {body}");
    body
}

/// GETs `url`: (status, JSON body or null), whatever the status.
pub async fn get(url: &str) -> (u16, Json) {
    let response = http()
        .get(url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Json::Null))
}

/// GETs `url`; panics unless it answers 2xx with JSON.
pub async fn get_json(url: &str) -> Json {
    let response = http()
        .get(url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    assert!(
        response.status().is_success(),
        "GET {url}: {}",
        response.status()
    );
    response.json().await.expect("JSON body")
}

/// DELETEs `url`; panics unless it answers 2xx with JSON.
pub async fn delete_json(url: &str) -> Json {
    let response = http()
        .delete(url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("DELETE {url}: {e}"));
    assert!(
        response.status().is_success(),
        "DELETE {url}: {}",
        response.status()
    );
    response.json().await.expect("JSON body")
}

/// GETs `url` as text (a metrics page, say), whatever the status.
pub async fn get_text(url: &str) -> String {
    http()
        .get(url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"))
        .text()
        .await
        .expect("text body")
}

/// The value of the metric line starting with `series` on `base`'s `/metrics`.
pub async fn metric(base: &str, series: &str) -> u64 {
    let text = get_text(&format!("{base}/metrics")).await;
    text.lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {series} in {text}"))
}

/// What a request got back.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    /// The `Retry-After` header, when there is one.
    pub retry_after: Option<String>,
    /// The JSON body, or null.
    pub body: Json,
}

/// Sends `method url` with `body` (JSON), as the user of `token` (`None`: no Authorization
/// header).
pub async fn send_as(
    method: reqwest::Method,
    url: &str,
    token: Option<&str>,
    body: Option<Json>,
) -> Reply {
    let mut request = http().request(method, url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request
        .send()
        .await
        .unwrap_or_else(|e| panic!("{url}: {e}"));
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    Reply {
        status,
        retry_after,
        body: response.json().await.unwrap_or(Json::Null),
    }
}
