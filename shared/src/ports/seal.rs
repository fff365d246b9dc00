//! The seal port: MACs over poll states with a key only the worker's functions may use
//! (the seal's format: [`crate::contract::seal`]).

use async_trait::async_trait;

use crate::contract::seal::Seal;

/// Why a seal could not be made or checked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// No key is configured (`POLL_STATE_KEY`).
    #[error("no poll-state key is configured (POLL_STATE_KEY)")]
    NoKey,
    /// The key service is busy or out of reach (throttled, a 5xx, the network): trying
    /// again may pass.
    #[error("{0}")]
    Busy(String),
    /// The key cannot be used (access denied, disabled, not an HMAC key).
    #[error("{0}")]
    Refused(String),
}

/// Makes and checks poll states' seals.
#[async_trait]
pub trait PollSeal: Send + Sync {
    /// The seal of `message` (a poll state's canonical text), with the deployment's
    /// current key.
    ///
    /// # Errors
    /// [`SealError`].
    async fn seal(&self, message: &str) -> Result<Seal, SealError>;

    /// Whether `seal` is a seal of `message` made with one of the deployment's keys
    /// (the current one, or the previous one while keys are rotated): `Ok(false)` for a
    /// MAC that does not verify or a key that is not the deployment's.
    ///
    /// # Errors
    /// [`SealError`] when the check itself could not be made.
    async fn verify(&self, message: &str, seal: &Seal) -> Result<bool, SealError>;

    /// The 32-byte key that hides poll states' task tokens
    /// ([`crate::contract::seal::hide_token`]), derived from the deployment's key named
    /// `key_id` (a seal's `KeyId`), or from the current key when `None`: the MAC of
    /// [`crate::contract::seal::TOKEN_KEY_LABEL`]'s digest. `Ok(None)` when `key_id` is
    /// not one of the deployment's keys.
    ///
    /// # Errors
    /// [`SealError`] when the key could not be made.
    async fn token_key(&self, key_id: Option<&str>) -> Result<Option<Vec<u8>>, SealError>;
}

/// Whether a seal's `key_id` (a key ARN as KMS reports it, or a bare key id) names
/// `configured` (an ARN or a bare key id).
#[must_use]
pub fn same_key(key_id: &str, configured: &str) -> bool {
    let id = |k: &str| k.rsplit_once(":key/").map_or(k, |(_, id)| id).to_owned();
    !key_id.is_empty()
        && (key_id == configured
            || (!(key_id.contains(':') && configured.contains(':'))
                && id(key_id) == id(configured)))
}

#[cfg(test)]
mod tests {
    use super::same_key;

    #[test]
    fn a_key_is_named_by_its_arn_or_its_id() {
        let arn = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab";
        assert!(same_key(arn, arn));
        assert!(same_key(arn, "1234abcd-12ab"));
        assert!(same_key("1234abcd-12ab", arn));
        assert!(!same_key(
            "arn:aws:kms:us-east-1:999999999999:key/1234abcd-12ab",
            arn
        ));
        assert!(!same_key("other", arn));
        assert!(!same_key("", ""));
    }
}
