//! A poll state sealed for the wire, and opened from it: the one place where the seal's
//! two halves meet (the MAC over the state with its token in the clear, and the token
//! encrypted on the wire; [`crate::contract::seal`]), for the hand-off, the check of a
//! schedule found at the next poll's name, and the poller.

use serde_json::Value;

use crate::contract::seal::{self, Seal};
use crate::ports::seal::{PollSeal, SealError};

/// `state` (a poll state, its token in the clear) sealed with the deployment's current
/// key: the schedule's input text, and the seal (the same for every delivery of one
/// state).
///
/// # Errors
/// [`SealError`]: the key cannot be used, or is busy; `Refused` for a state that is not
/// a JSON object.
pub async fn seal(keys: &dyn PollSeal, state: &Value) -> Result<(String, Seal), SealError> {
    let refused = |e: seal::Unsealed| SealError::Refused(format!("the poll state: {e}"));
    let message = seal::message(state).map_err(refused)?;
    let made = keys.seal(&message).await?;
    let key = keys.token_key(None).await?.ok_or(SealError::NoKey)?;
    let wire = seal::hide_token(state, &key).map_err(refused)?;
    let input = seal::with_seal(&wire, &made).map_err(refused)?;
    Ok((input, made))
}

/// A delivered poll state: `Ok(Ok(state))`, its token in the clear and its seal gone,
/// when it was sealed with one of the deployment's keys; `Ok(Err(why))` when it was not
/// (no seal, a seal of something else or by another key, a token that does not open).
///
/// # Errors
/// [`SealError`] when the check itself could not be made (no key, the key refused or
/// busy): not the state's fault.
pub async fn open(
    keys: &dyn PollSeal,
    delivered: &Value,
) -> Result<Result<Value, String>, SealError> {
    let (_, found, wire) = match seal::open(delivered) {
        Ok(opened) => opened,
        Err(e) => return Ok(Err(e.to_string())),
    };
    let not_ours = || {
        format!(
            "the seal (key {}) is not a seal of this state by the deployment's key",
            found.key_id
        )
    };
    let state = if seal::token_is_hidden(&wire) {
        let Some(key) = keys.token_key(Some(&found.key_id)).await? else {
            return Ok(Err(not_ours()));
        };
        match seal::reveal_token(&wire, &key) {
            Ok(state) => state,
            Err(e) => return Ok(Err(e.to_string())),
        }
    } else {
        wire
    };
    if keys.verify(&seal::canonical(&state), &found).await? {
        Ok(Ok(state))
    } else {
        Ok(Err(not_ours()))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::testing::LocalSeal;

    #[tokio::test]
    async fn a_sealed_state_shows_no_token_and_opens_only_as_it_was_sealed() {
        let keys = LocalSeal::default();
        let state = json!({ "TaskToken": "secret-token", "Attempt": 3, "JobUid": "u" });
        let (input, made) = seal(&keys, &state).await.unwrap_or_else(|e| panic!("{e}"));
        assert!(!input.contains("secret-token"), "{input}");
        let wire: Value = serde_json::from_str(&input).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(open(&keys, &wire).await, Ok(Ok(state.clone())));
        // Every delivery of the state has the same seal, whatever the nonce.
        let (again, made_again) = seal(&keys, &state).await.unwrap_or_else(|e| panic!("{e}"));
        assert_ne!(input, again);
        assert_eq!(made, made_again);

        // Another deployment's key: its seal and its token are not ours.
        let (theirs, _) = seal(&LocalSeal::new("other-key", "other"), &state)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let theirs: Value = serde_json::from_str(&theirs).unwrap_or_else(|e| panic!("{e}"));
        assert!(open(&keys, &theirs).await.is_ok_and(|o| o.is_err()));
        // A field changed, the sealed token swapped for another state's: refused.
        let mut changed = wire.clone();
        changed["Attempt"] = json!(1);
        assert!(open(&keys, &changed).await.is_ok_and(|o| o.is_err()));
        let other = json!({ "TaskToken": "other-token", "Attempt": 3, "JobUid": "u" });
        let (other, _) = seal(&keys, &other).await.unwrap_or_else(|e| panic!("{e}"));
        let other: Value = serde_json::from_str(&other).unwrap_or_else(|e| panic!("{e}"));
        let mut swapped = wire.clone();
        swapped[seal::SEALED_TOKEN_FIELD] = other[seal::SEALED_TOKEN_FIELD].clone();
        assert!(open(&keys, &swapped).await.is_ok_and(|o| o.is_err()));
        // A state sealed by an earlier version (its token in the clear) still opens.
        let message = seal::message(&state).unwrap_or_default();
        let legacy = seal::with_seal(
            &state,
            &keys.seal(&message).await.unwrap_or_else(|e| panic!("{e}")),
        )
        .unwrap_or_default();
        let legacy: Value = serde_json::from_str(&legacy).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(open(&keys, &legacy).await, Ok(Ok(state)));
    }
}
