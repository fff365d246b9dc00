//! The call function: `eks:call`, any Kubernetes REST request, answered as
//! `{ResponseBody, StatusCode, StatusText, Headers}`; an error status is `EKS.<status>`
//! with the native cause.

use serde_json::{json, Map, Value};
use tracing::Instrument;

use crate::contract::budget::{result_budget, serialized_len};
use crate::contract::error::{names, TaskError};
use crate::contract::payload;
use crate::contract::payload::{callback_token, CallInput, CallMethod};
use crate::ports::kube::{KubeRequest, KubeResponse};
use crate::task::answer::deliver;
use crate::task::deps::Deps;

/// Handles one call payload: request/response returns the result; with `TaskToken`
/// the result or error goes back on the token.
///
/// # Errors
/// Request/response: the task error. Callback: only when Step Functions cannot be told.
pub async fn handle(payload: Value, deps: &Deps) -> Result<Value, TaskError> {
    async {
        let answer = run(&payload, deps).await;
        deliver(deps, callback_token(&payload).as_deref(), answer).await
    }
    .instrument(crate::task::telemetry::payload_span(&payload))
    .await
}

async fn run(payload: &Value, deps: &Deps) -> Result<Value, TaskError> {
    let input = payload::parse_call(payload)?;
    let kube = deps.connector.connect(&input.cluster).await?;
    let response = kube
        .send_capped(request(&input), MAX_RESPONSE_BYTES)
        .await?;
    if response.body_len > MAX_RESPONSE_BYTES as u64 {
        return Err(TaskError::new(
            names::RESPONSE_TOO_LARGE,
            json!({
                "message": format!("the API server's response to {} {} is longer than the {MAX_RESPONSE_BYTES} bytes a call reads; it was not read on", input.method.as_str(), input.path),
                "StatusCode": response.status,
                "limitBytes": MAX_RESPONSE_BYTES,
                "hint": "page the list: QueryParameters {\"limit\": [\"500\"]}, then {\"continue\": [<metadata.continue of the page before>]}; or narrow it with a labelSelector or fieldSelector",
            }),
        ));
    }
    let response = response.ok()?;
    Ok(result(&input, &response))
}

/// The most response bytes a call reads into memory (8 MiB); a longer response is
/// `EksTaskWorker.ResponseTooLarge`. Its result is cut to the result budget anyway.
pub const MAX_RESPONSE_BYTES: usize = 8 * 1024 * 1024;

/// The HTTP request for a call: the body as JSON, or a string as written; PATCH with
/// the content type of its patch type.
#[must_use]
pub fn request(input: &CallInput) -> KubeRequest {
    let content_type = if input.method == CallMethod::Patch {
        input.patch_type.content_type()
    } else {
        "application/json"
    };
    let body = input.body.as_ref().map(|b| {
        let bytes = match b {
            Value::String(s) => s.clone().into_bytes(),
            other => other.to_string().into_bytes(),
        };
        (bytes, content_type)
    });
    KubeRequest {
        method: http::Method::from_bytes(input.method.as_str().as_bytes())
            .unwrap_or(http::Method::GET),
        path: input.path.clone(),
        query: input.query.clone(),
        body,
    }
}

/// The native call result, plus `Headers`; a body that would not fit the result
/// budget is cut (as text) to fit: the whole budget on a task token, less the room
/// Step Functions' `lambda:invoke` envelope takes when it is the invocation's result.
#[must_use]
pub fn result(input: &CallInput, response: &KubeResponse) -> Value {
    let body = if input.method == CallMethod::Head {
        Value::Null
    } else {
        response.body_value()
    };
    let headers: Map<String, Value> = response
        .headers
        .iter()
        .map(|(k, v)| (k.clone(), json!(v)))
        .collect();
    let doc = json!({ "ResponseBody": body, "StatusCode": response.status, "StatusText": response.reason, "Headers": headers });
    let budget = result_budget(input.task_token.is_some());
    if serialized_len(&doc) <= budget {
        return doc;
    }
    let text = String::from_utf8_lossy(&response.body).into_owned();
    let skeleton = json!({ "ResponseBody": "", "StatusCode": response.status, "StatusText": response.reason, "Headers": headers });
    let room = budget.saturating_sub(serialized_len(&skeleton));
    json!({
        "ResponseBody": crate::contract::budget::keep_tail(&text, room, false),
        "StatusCode": response.status,
        "StatusText": response.reason,
        "Headers": headers,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::result;
    use crate::contract::budget::{serialized_len, ENVELOPE_ROOM, RESULT_BUDGET};
    use crate::contract::payload::parse_call;
    use crate::ports::kube::KubeResponse;

    /// A body of 300 KB fills the whole budget on a task token, and leaves the
    /// envelope's room as an invocation's result (request/response).
    #[test]
    fn a_request_response_result_leaves_room_for_the_lambda_envelope() {
        let body = "x".repeat(300_000);
        let response = KubeResponse {
            status: 200,
            reason: "OK".into(),
            headers: vec![],
            body_len: body.len() as u64,
            body: body.into(),
        };
        let call = json!({ "ClusterName": "c", "Method": "GET", "Path": "/api/v1/pods" });
        let plain = parse_call(&call).unwrap_or_else(|e| panic!("{e}"));
        let mut with_token = call.clone();
        with_token["TaskToken"] = json!("t".repeat(64));
        let on_token = parse_call(&with_token).unwrap_or_else(|e| panic!("{e}"));
        let invoked = serialized_len(&result(&plain, &response));
        let answered = serialized_len(&result(&on_token, &response));
        assert!(invoked <= RESULT_BUDGET - ENVELOPE_ROOM, "{invoked}");
        assert!(
            answered <= RESULT_BUDGET && answered > RESULT_BUDGET - ENVELOPE_ROOM,
            "{answered}"
        );
    }
}
