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
//!
//! The task token is not shown: on the wire it is `"SealedTaskToken": "<base64 of
//! nonce, ciphertext and tag>"` in place of `TaskToken`, AES-256-GCM under a key the
//! deployment's KMS key derives (the MAC of [`TOKEN_KEY_LABEL`]'s digest: only the
//! worker's functions can make it), with a random nonce ([`hide_token`],
//! [`reveal_token`]). The MAC covers the state with its token in the clear, so it is
//! the same for every delivery of one state whatever the nonce. A state sealed by an
//! earlier version, its `TaskToken` in the clear, still verifies.

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

/// The field a poll state's task token is in, in the clear.
pub const TOKEN_FIELD: &str = "TaskToken";
/// The field that carries the task token, encrypted, on the wire.
pub const SEALED_TOKEN_FIELD: &str = "SealedTaskToken";
/// What the deployment's key MACs (its [`digest`]) to make the token key: a label of
/// this use and version, so that the key is of no other use.
pub const TOKEN_KEY_LABEL: &str = "eks-task-worker poll-state task-token key v1";

/// The characters the token's encryption adds to a state whose token has `chars`
/// characters (ASCII, as Step Functions makes them): the longer field name, and the
/// base64 of the nonce, the token and the tag.
#[must_use]
pub const fn hidden_token_room(chars: usize) -> usize {
    let bytes = NONCE_BYTES + chars + TAG_BYTES;
    (SEALED_TOKEN_FIELD.len() - TOKEN_FIELD.len()) + bytes.div_ceil(3) * 4 - chars
}

const NONCE_BYTES: usize = 12;
const TAG_BYTES: usize = 16;

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
    /// A `SealedTaskToken` that the key does not open (not made with it, or changed), or
    /// a state that carries the token both sealed and in the clear.
    #[error("the poll state's sealed task token does not open with the deployment's key")]
    TokenUnreadable,
}

fn token_cipher(key: &[u8]) -> Result<aws_lc_rs::aead::RandomizedNonceKey, Unsealed> {
    aws_lc_rs::aead::RandomizedNonceKey::new(&aws_lc_rs::aead::AES_256_GCM, key)
        .map_err(|_| Unsealed::TokenUnreadable)
}

/// `state` (a poll state, its token in the clear) as it goes on the wire: `TaskToken`
/// replaced by `SealedTaskToken`, encrypted with `key` (32 bytes) under a random nonce.
/// A state without a token (or with one that is no string, which the poller refuses)
/// is returned as it is.
///
/// # Errors
/// [`Unsealed::NotAnObject`]; [`Unsealed::TokenUnreadable`] for a key that is not 32
/// bytes.
pub fn hide_token(state: &Value, key: &[u8]) -> Result<Value, Unsealed> {
    use base64::Engine;
    let mut fields = state.as_object().cloned().ok_or(Unsealed::NotAnObject)?;
    let Some(Value::String(token)) = fields.shift_remove(TOKEN_FIELD) else {
        return Ok(state.clone());
    };
    let mut sealed = token.into_bytes();
    let nonce = token_cipher(key)?
        .seal_in_place_append_tag(
            aws_lc_rs::aead::Aad::from(TOKEN_KEY_LABEL.as_bytes()),
            &mut sealed,
        )
        .map_err(|_| Unsealed::TokenUnreadable)?;
    let mut wire = nonce.as_ref().to_vec();
    wire.extend_from_slice(&sealed);
    fields.insert(
        SEALED_TOKEN_FIELD.into(),
        Value::String(base64::engine::general_purpose::STANDARD.encode(wire)),
    );
    Ok(Value::Object(fields))
}

/// Whether a delivered state carries its token sealed (else in the clear, as an
/// earlier version wrote it, or none).
#[must_use]
pub fn token_is_hidden(state: &Value) -> bool {
    state.get(SEALED_TOKEN_FIELD).is_some()
}

/// `state` as it was sealed: its `SealedTaskToken` opened with `key` into `TaskToken`.
///
/// # Errors
/// [`Unsealed::TokenUnreadable`]: not base64, not made with `key`, changed, not UTF-8,
/// or a `TaskToken` in the clear beside it; [`Unsealed::NotAnObject`].
pub fn reveal_token(state: &Value, key: &[u8]) -> Result<Value, Unsealed> {
    use base64::Engine;
    let mut fields = state.as_object().cloned().ok_or(Unsealed::NotAnObject)?;
    let Some(Value::String(wire)) = fields.shift_remove(SEALED_TOKEN_FIELD) else {
        return Err(Unsealed::TokenUnreadable);
    };
    if fields.contains_key(TOKEN_FIELD) {
        return Err(Unsealed::TokenUnreadable);
    }
    let wire = base64::engine::general_purpose::STANDARD
        .decode(wire)
        .map_err(|_| Unsealed::TokenUnreadable)?;
    if wire.len() < NONCE_BYTES + TAG_BYTES {
        return Err(Unsealed::TokenUnreadable);
    }
    let (nonce, sealed) = wire.split_at(NONCE_BYTES);
    let nonce = aws_lc_rs::aead::Nonce::try_assume_unique_for_key(nonce)
        .map_err(|_| Unsealed::TokenUnreadable)?;
    let mut sealed = sealed.to_vec();
    let token = token_cipher(key)?
        .open_in_place(
            nonce,
            aws_lc_rs::aead::Aad::from(TOKEN_KEY_LABEL.as_bytes()),
            &mut sealed,
        )
        .map_err(|_| Unsealed::TokenUnreadable)?;
    let token = String::from_utf8(token.to_vec()).map_err(|_| Unsealed::TokenUnreadable)?;
    fields.insert(TOKEN_FIELD.into(), Value::String(token));
    Ok(Value::Object(fields))
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
    fn canonical_text_separates_array_items() {
        // Else [1, 2] and [12] would share a MAC.
        assert_eq!(canonical(&json!([1, 2])), "[1,2]");
        assert_ne!(canonical(&json!([1, 2])), canonical(&json!([12])));
        assert_eq!(
            canonical(&json!({"b": [true, null], "a": "x"})),
            r#"{"a":"x","b":[true,null]}"#
        );
    }

    #[test]
    fn the_digest_is_the_messages_sha_256() {
        // FIPS 180-2's first example: SHA-256("abc").
        let abc: String = digest("abc").iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            abc,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_ne!(digest("{\"a\":1}"), digest("{\"a\":2}"));
    }

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
    fn the_token_goes_sealed_and_comes_back_only_with_its_key() {
        let key = [7u8; 32];
        let token = "AAAAKgAAAAIAAAAAAAAAAf/token+with/base64==";
        let state = json!({ "Attempt": 2, "TaskToken": token, "JobUid": "u" });
        let wire = hide_token(&state, &key).unwrap_or_else(|e| panic!("{e}"));
        let text = wire.to_string();
        assert!(
            !text.contains(token) && wire.get(TOKEN_FIELD).is_none() && token_is_hidden(&wire),
            "{text}"
        );
        assert_eq!(
            text.chars().count() - state.to_string().chars().count(),
            hidden_token_room(token.len()),
            "the room the encryption takes is what the state's budget counts"
        );
        // A random nonce: two deliveries differ on the wire, both open to the state.
        let again = hide_token(&state, &key).unwrap_or_else(|e| panic!("{e}"));
        assert_ne!(wire, again);
        assert_eq!(reveal_token(&wire, &key), Ok(state.clone()));
        assert_eq!(reveal_token(&again, &key), Ok(state.clone()));
        assert_eq!(
            message(&reveal_token(&wire, &key).unwrap_or_default()),
            message(&state)
        );
        // Another key, a changed byte, a token in the clear beside it: not opened.
        assert_eq!(
            reveal_token(&wire, &[8u8; 32]),
            Err(Unsealed::TokenUnreadable)
        );
        let mut changed = wire.clone();
        let sealed = changed[SEALED_TOKEN_FIELD]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let flipped = if sealed.ends_with("AA") { "BA" } else { "AA" };
        changed[SEALED_TOKEN_FIELD] = json!(format!("{}{flipped}", &sealed[..sealed.len() - 2]));
        assert_eq!(reveal_token(&changed, &key), Err(Unsealed::TokenUnreadable));
        let mut both = wire.clone();
        both[TOKEN_FIELD] = json!("other");
        assert_eq!(reveal_token(&both, &key), Err(Unsealed::TokenUnreadable));
        for bad in [json!("!!"), json!("AAAA"), json!(1)] {
            let mut w = wire.clone();
            w[SEALED_TOKEN_FIELD] = bad;
            assert_eq!(reveal_token(&w, &key), Err(Unsealed::TokenUnreadable));
        }
        // A state with no token, or one that is no string, is left as it is.
        for plain in [json!({ "a": 1 }), json!({ "TaskToken": 5 })] {
            assert_eq!(hide_token(&plain, &key), Ok(plain.clone()));
        }
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
