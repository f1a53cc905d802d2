//! Response shapes Duplicati writes.
//! // Duplicati/WebserverCore/DuplicatiWebserver.cs (CreateWebServer: JSON options with
//! // PropertyNamingPolicy = null, UseExceptionHandler writing {"Error","Code"}).

use http_types::{Response, StatusCode};
use serde_json::{json, Value};

pub fn status(code: u16) -> StatusCode {
    StatusCode::try_from(code).unwrap_or(StatusCode::InternalServerError)
}

pub fn json(code: u16, body: &Value) -> Response {
    let mut r = Response::new(status(code));
    r.insert_header("content-type", "application/json; charset=utf-8");
    r.set_body(body.to_string());
    r
}

/// Handled errors: `{"Error":"<msg>","Code":<status>}`, as the exception handler writes
/// UserReportedHttpException. // Duplicati/WebserverCore/Exceptions/*.cs
pub fn error(code: u16, msg: &str) -> Response {
    json(code, &json!({ "Error": msg, "Code": code }))
}

/// Unhandled exceptions: the message is not leaked.
pub fn internal() -> Response {
    error(500, "An error occurred")
}

/// JwtBearer's default challenge: 401, empty body, `WWW-Authenticate: Bearer`.
pub fn challenge() -> Response {
    let mut r = Response::new(StatusCode::Unauthorized);
    r.insert_header("www-authenticate", "Bearer");
    r.insert_header("content-length", "0");
    r
}

/// A route that matched nothing: Kestrel answers 404 with an empty body.
pub fn empty(code: u16) -> Response {
    let mut r = Response::new(status(code));
    r.insert_header("content-length", "0");
    r
}

pub fn text(code: u16, body: &str) -> Response {
    let mut r = Response::new(status(code));
    r.insert_header("content-type", "text/plain");
    r.set_body(body.to_string());
    r
}

pub fn html(body: String) -> Response {
    let mut r = Response::new(StatusCode::Ok);
    r.insert_header("content-type", "text/html; charset=utf-8");
    r.set_body(body);
    r
}

/// /api/v2 failures: HTTP 200 with the envelope.
/// // Duplicati/WebserverCore/Dto/V2/BaseTypes.cs (ResponseEnvelope.Failure)
pub fn v2_failure(code: u16, msg: &str) -> Response {
    json(
        200,
        &json!({ "Success": false, "Error": msg, "StatusCode": format!("HTTP-{code}") }),
    )
}
