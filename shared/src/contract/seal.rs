//! The seal of a poll state: a MAC over the whole state, made with a key only the
//! worker's functions may use (a KMS HMAC key), so that a poll state is one the worker
//! wrote. Wire format: the state's own fields, and beside them
//! `"Seal": {"KeyId": "<the key's ARN>", "Mac": "<base64>"}`.
//!
//! The MAC covers the state's canonical JSON: every field but `Seal`, objects' keys
//! sorted at every depth, no spaces, so that a service that passes the input on with its
//! keys in another order does not break it (and any changed byte of a value does). KMS
//! MACs at most 4,096 bytes and a state may hold 8,192 characters, so what is MACed is
//! the SHA-256 of that text ([`digest`]).

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The field that carries the seal.
pub const SEAL_FIELD: &str = "Seal";

/// The most characters a seal adds to a poll state: the field, a key ARN (about 80) and
/// a base64 HMAC-SHA-512 at most (88), with room to spare.
pub const SEAL_ROOM: usize = 320;

/// A poll state's seal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Seal {
    /// The key that made the MAC (its ARN, as KMS reports it).
    pub key_id: String,
    /// The MAC, base64.
    pub mac: String,
}

/// Why a poll state is not taken as the worker's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unsealed {
    /// The input is not a JSON object.
    #[error("the poll state is not a JSON object")]
    NotAnObject,
    /// No `Seal` field.
    #[error("the poll state carries no seal")]
    Missing,
    /// A `Seal` that is not `{"KeyId", "Mac"}` strings.
    #[error("the poll state's seal is malformed")]
    Malformed,
}

/// The canonical text of a JSON value: objects' keys sorted at every depth, compact.
#[must_use]
pub fn canonical(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                write_canonical(&map[k.as_str()], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(v, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// The message a poll state's MAC covers: the canonical text of `state` without its
/// seal.
///
/// # Errors
/// [`Unsealed::NotAnObject`].
pub fn message(state: &Value) -> Result<String, Unsealed> {
    let mut fields = state.as_object().cloned().ok_or(Unsealed::NotAnObject)?;
    fields.shift_remove(SEAL_FIELD);
    Ok(canonical(&Value::Object(fields)))
}

/// What a key MACs for `message` (a state's canonical text): its SHA-256, 32 bytes
/// whatever the state's size.
#[must_use]
pub fn digest(message: &str) -> Vec<u8> {
    use sha2::Digest;
    sha2::Sha256::digest(message.as_bytes()).to_vec()
}

/// The length of an HMAC-SHA-256, the only MAC a seal carries.
pub const MAC_BYTES: usize = 32;

/// `state` (a poll state) with `seal` beside its fields, as the schedule's input text.
///
/// # Errors
/// [`Unsealed::NotAnObject`] when `state` is not a JSON object.
pub fn with_seal(state: &Value, seal: &Seal) -> Result<String, Unsealed> {
    let mut fields = state.as_object().cloned().ok_or(Unsealed::NotAnObject)?;
    fields.insert(
        SEAL_FIELD.into(),
        serde_json::to_value(seal).map_err(|_| Unsealed::Malformed)?,
    );
    Ok(Value::Object(fields).to_string())
}

/// A delivered poll state's message and seal, and the state without its seal.
///
/// # Errors
/// [`Unsealed`]: not an object, no seal, a malformed seal.
pub fn open(delivered: &Value) -> Result<(String, Seal, Value), Unsealed> {
    let mut fields = delivered
        .as_object()
        .cloned()
        .ok_or(Unsealed::NotAnObject)?;
    let seal = fields.shift_remove(SEAL_FIELD).ok_or(Unsealed::Missing)?;
    let seal: Seal = serde_json::from_value(seal).map_err(|_| Unsealed::Malformed)?;
    let state = Value::Object(fields);
    Ok((canonical(&state), seal, state))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_message_is_the_state_in_canonical_order_without_its_seal() {
        let seal = Seal {
            key_id: "arn:aws:kms:us-east-1:1:key/k".into(),
            mac: "bWFj".into(),
        };
        let input = r#"{"b":1,"a":{"d":[{"z":"\"","y":2}],"c":null}}"#;
        let parsed: Value = serde_json::from_str(input).unwrap_or_else(|e| panic!("{e}"));
        let sealed = with_seal(&parsed, &seal).unwrap_or_else(|e| panic!("{e}"));
        let delivered: Value = serde_json::from_str(&sealed).unwrap_or_else(|e| panic!("{e}"));
        let (message, found, state) = open(&delivered).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(found, seal);
        assert_eq!(message, r#"{"a":{"c":null,"d":[{"y":2,"z":"\""}]},"b":1}"#);
        assert_eq!(
            super::message(&serde_json::from_str(input).unwrap_or_default()),
            Ok(message.clone())
        );
        assert_eq!(
            state,
            serde_json::from_str::<Value>(input).unwrap_or_default()
        );
        // Reordered on the way: the same message. A changed value: another.
        let reordered =
            json!({ "Seal": seal, "a": { "c": null, "d": [{ "y": 2, "z": "\"" }] }, "b": 1 });
        assert_eq!(open(&reordered).map(|o| o.0), Ok(message.clone()));
        let changed =
            json!({ "Seal": seal, "a": { "c": null, "d": [{ "y": 3, "z": "\"" }] }, "b": 1 });
        assert_ne!(open(&changed).map(|o| o.0), Ok(message));
    }

    #[test]
    fn a_state_without_a_well_formed_seal_is_named() {
        assert_eq!(open(&json!([])).err(), Some(Unsealed::NotAnObject));
        assert_eq!(open(&json!({ "a": 1 })).err(), Some(Unsealed::Missing));
        assert_eq!(
            open(&json!({ "a": 1, "Seal": { "KeyId": 1 } })).err(),
            Some(Unsealed::Malformed)
        );
    }
}
