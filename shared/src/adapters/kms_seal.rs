//! [`PollSeal`] on a KMS HMAC key (`GenerateMac`, `VerifyMac`, HMAC-SHA-256): the key's
//! material never leaves KMS, so only principals allowed the key's MAC operations (the
//! worker's roles) can seal a poll state.

use async_trait::async_trait;
use aws_sdk_kms::error::ProvideErrorMetadata;
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::MacAlgorithmSpec;
use base64::Engine;

use crate::contract::error::error_chain;
use crate::contract::seal::{self, Seal};
use crate::ports::seal::{same_key, PollSeal, SealError};

/// Seals with the first of `keys` (`POLL_STATE_KEY`) and verifies with any of them (the
/// previous key too, `POLL_STATE_PREVIOUS_KEY`, while keys are rotated). The token keys
/// derived from them are kept for the life of the process (one `GenerateMac` per key
/// per cold start).
pub struct KmsSeal {
    client: aws_sdk_kms::Client,
    keys: Vec<String>,
    token_keys: std::sync::Mutex<std::collections::HashMap<String, Vec<u8>>>,
}

impl KmsSeal {
    /// A seal on `keys` (ARNs or key ids; the first seals) through the SDK
    /// configuration loaded at cold start. The SDK's standard retry stays on: a MAC is
    /// idempotent.
    #[must_use]
    pub fn new(config: &aws_config::SdkConfig, keys: Vec<String>) -> Self {
        let client = aws_sdk_kms::Client::from_conf(
            aws_sdk_kms::config::Builder::from(config)
                .timeout_config(
                    aws_sdk_kms::config::timeout::TimeoutConfig::builder()
                        .operation_timeout(crate::ports::callback::CALL_TIMEOUT)
                        .build(),
                )
                .build(),
        );
        Self {
            client,
            keys,
            token_keys: std::sync::Mutex::default(),
        }
    }

    /// The MAC of `message`'s digest with `key` (as configured).
    async fn mac(&self, key: &str, message: &str) -> Result<(String, Vec<u8>), SealError> {
        let made = self
            .client
            .generate_mac()
            .key_id(key)
            .mac_algorithm(MacAlgorithmSpec::HmacSha256)
            .message(Blob::new(seal::digest(message)))
            .send()
            .await;
        match made {
            Ok(out) => Ok((
                out.key_id().unwrap_or(key).to_owned(),
                out.mac().map(|m| m.as_ref().to_vec()).unwrap_or_default(),
            )),
            Err(e) => Err(busy_or_refused(
                e.raw_response().map(|r| r.status().as_u16()),
                e.as_service_error().and_then(ProvideErrorMetadata::code),
                format!("GenerateMac with {key}: {}", error_chain(&e)),
            )),
        }
    }
}

#[async_trait]
impl PollSeal for KmsSeal {
    async fn seal(&self, message: &str) -> Result<Seal, SealError> {
        let key = self.keys.first().ok_or(SealError::NoKey)?;
        let (key_id, mac) = self.mac(key, message).await?;
        Ok(Seal {
            key_id,
            mac: base64::engine::general_purpose::STANDARD.encode(mac),
        })
    }

    async fn token_key(&self, key_id: Option<&str>) -> Result<Option<Vec<u8>>, SealError> {
        let key = match key_id {
            None => self.keys.first().ok_or(SealError::NoKey)?,
            Some(id) => match self.keys.iter().find(|k| same_key(id, k)) {
                Some(key) => key,
                None if self.keys.is_empty() => return Err(SealError::NoKey),
                None => return Ok(None),
            },
        };
        if let Some(known) = self
            .token_keys
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(key)
        {
            return Ok(Some(known.clone()));
        }
        let (_, derived) = self.mac(key, seal::TOKEN_KEY_LABEL).await?;
        if derived.len() != seal::MAC_BYTES {
            return Err(SealError::Refused(format!(
                "GenerateMac with {key} made {} bytes, not an HMAC-SHA-256",
                derived.len()
            )));
        }
        self.token_keys
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(key.clone(), derived.clone());
        Ok(Some(derived))
    }

    async fn verify(&self, message: &str, found: &Seal) -> Result<bool, SealError> {
        if self.keys.is_empty() {
            return Err(SealError::NoKey);
        }
        // Checked with the deployment's own key as configured, never a key the input
        // names; a MAC that is not an HMAC-SHA-256 is no seal (KMS is not asked).
        let Some(key) = self.keys.iter().find(|k| same_key(&found.key_id, k)) else {
            return Ok(false);
        };
        let mac = match base64::engine::general_purpose::STANDARD.decode(&found.mac) {
            Ok(mac) if mac.len() == seal::MAC_BYTES => mac,
            _ => return Ok(false),
        };
        let checked = self
            .client
            .verify_mac()
            .key_id(key)
            .mac_algorithm(MacAlgorithmSpec::HmacSha256)
            .message(Blob::new(seal::digest(message)))
            .mac(Blob::new(mac))
            .send()
            .await;
        match checked {
            Ok(out) => Ok(out.mac_valid()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_kms_invalid_mac_exception()) =>
            {
                Ok(false)
            }
            Err(e) => Err(busy_or_refused(
                e.raw_response().map(|r| r.status().as_u16()),
                e.as_service_error().and_then(ProvideErrorMetadata::code),
                format!("VerifyMac with {key}: {}", error_chain(&e)),
            )),
        }
    }
}

/// Busy when there was no answer, a 5xx, or throttling (KMS answers it 400,
/// `ThrottlingException`) or a key briefly unavailable; refused otherwise.
fn busy_or_refused(status: Option<u16>, code: Option<&str>, message: String) -> SealError {
    let busy_code = matches!(
        code,
        Some("ThrottlingException" | "KMSInternalException" | "KeyUnavailableException")
    );
    if busy_code || status.is_none_or(|s| s == 429 || s >= 500) {
        SealError::Busy(message)
    } else {
        SealError::Refused(message)
    }
}
