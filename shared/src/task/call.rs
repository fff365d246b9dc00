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
    result(&input, &response)
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

/// The native call result, plus `Headers`. A result that would not fit the result
/// budget (the whole budget on a task token, less the room Step Functions' `lambda:invoke`
/// envelope takes when it is the invocation's result): a JSON body (a list, an object)
/// fails the call, as natively (`States.DataLimitExceeded` there), rather than change
/// its type; a text body (a log) is cut to its tail, a string still.
///
/// # Errors
/// `EksTaskWorker.ResponseTooLarge` for a JSON body that does not fit.
pub fn result(input: &CallInput, response: &KubeResponse) -> Result<Value, TaskError> {
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
    let size = serialized_len(&doc);
    if size <= budget {
        return Ok(doc);
    }
    if body.is_object() || body.is_array() {
        return Err(TaskError::new(
            names::RESPONSE_TOO_LARGE,
            json!({
                "message": format!("the result of {} {} would be {size} bytes, over the {budget} a Step Functions result holds; it is not cut, as a cut list would read as another answer (natively: States.DataLimitExceeded)", input.method.as_str(), input.path),
                "StatusCode": response.status,
                "limitBytes": budget,
                "hint": "page the list: QueryParameters {\"limit\": [\"50\"]}, then {\"continue\": [<metadata.continue of the page before>]}; or narrow it with a labelSelector or fieldSelector",
            }),
        ));
    }
    let text = String::from_utf8_lossy(&response.body).into_owned();
    let skeleton = json!({ "ResponseBody": "", "StatusCode": response.status, "StatusText": response.reason, "Headers": headers });
    let room = budget.saturating_sub(serialized_len(&skeleton));
    Ok(json!({
        "ResponseBody": crate::contract::budget::keep_tail(&text, room, false),
        "StatusCode": response.status,
        "StatusText": response.reason,
        "Headers": headers,
    }))
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
        let invoked = serialized_len(&result(&plain, &response).unwrap_or_default());
        let answered = serialized_len(&result(&on_token, &response).unwrap_or_default());
        assert!(invoked <= RESULT_BUDGET - ENVELOPE_ROOM, "{invoked}");
        assert!(
            answered <= RESULT_BUDGET && answered > RESULT_BUDGET - ENVELOPE_ROOM,
            "{answered}"
        );
    }

    /// A list that does not fit the result is not cut into a string (a `Choice` on
    /// `$.ResponseBody.items[0]` would read it as empty): the call fails by name, with
    /// how to page it; a list that fits stays a list.
    #[test]
    fn a_json_body_over_the_budget_fails_rather_than_change_type() {
        let list = |n: usize| {
            let items: Vec<_> = (0..n).map(|i| json!({ "metadata": { "name": format!("pod-{i:06}") }, "spec": { "x": "y".repeat(100) } })).collect();
            let body = json!({ "kind": "PodList", "items": items }).to_string();
            KubeResponse {
                status: 200,
                reason: "OK".into(),
                headers: vec![],
                body_len: body.len() as u64,
                body: body.into(),
            }
        };
        let call =
            parse_call(&json!({ "ClusterName": "c", "Method": "GET", "Path": "/api/v1/pods" }))
                .unwrap_or_else(|e| panic!("{e}"));
        let small = result(&call, &list(10)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            small["ResponseBody"]["items"][0]["metadata"]["name"],
            "pod-000000"
        );
        let e = result(&call, &list(5000))
            .err()
            .unwrap_or_else(|| panic!("must fail"));
        assert_eq!(e.name, crate::contract::error::names::RESPONSE_TOO_LARGE);
        assert!(
            e.cause["hint"]
                .as_str()
                .is_some_and(|h| h.contains("continue")),
            "{e}"
        );
    }
}
