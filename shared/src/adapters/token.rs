//! The EKS bearer token, as `aws eks get-token` makes it: `k8s-aws-v1.` + base64url (no
//! padding) of a presigned STS `GetCallerIdentity` URL whose signed headers include
//! `x-k8s-aws-id: <cluster>`.
//!
//! [`presign`] is the pure function; [`BearerTokens`] mints and caches tokens per
//! cluster and role, renewing them well before the 15-minute window closes.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    sign, SignableBody, SignableRequest, SignatureLocation, SigningSettings,
};
use aws_sigv4::sign::v4;
use base64::Engine;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use tokio::sync::Mutex;

use crate::contract::error::{names, TaskError};
use crate::ports::clock::Clock;
use crate::ports::credentials::{CredentialSource, CredentialsError};

/// The token prefix aws-iam-authenticator expects.
pub const TOKEN_PREFIX: &str = "k8s-aws-v1.";
/// The header that binds a token to one cluster.
pub const CLUSTER_ID_HEADER: &str = "x-k8s-aws-id";
/// The server accepts a token this long after its `X-Amz-Date`.
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(15 * 60);
/// A cached token is renewed once it is this old (5 minutes before it would expire),
/// unless the deployment says sooner (`TOKEN_RENEW_SECONDS`).
pub const RENEW_AFTER: Duration = crate::config::TOKEN_RENEW_MAX;
/// A token is never used past this long before the credentials that signed it expire
/// (assumed-role and other temporary credentials): STS would refuse it then.
pub const CREDENTIALS_MARGIN: Duration = Duration::from_secs(60);
/// The server rejects tokens longer than this.
pub const MAX_TOKEN_BYTES: usize = 4096;

/// RFC 3986 unreserved characters stay; everything else is percent-encoded, as
/// botocore does.
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Errors making a token.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The region or cluster name cannot go into a URL or header.
    #[error("cannot presign for region {region:?} and cluster {cluster:?}: {message}")]
    Input {
        /// The region asked for.
        region: String,
        /// The cluster asked for.
        cluster: String,
        /// Why it failed.
        message: String,
    },
    /// Credentials could not be had.
    #[error(transparent)]
    Credentials(#[from] CredentialsError),
    /// The token came out longer than the server accepts (a very long session token).
    #[error("the token is {0} bytes, over the {MAX_TOKEN_BYTES} bytes the server accepts")]
    TooLong(usize),
}

impl From<TokenError> for TaskError {
    fn from(e: TokenError) -> Self {
        match e {
            TokenError::Credentials(c) => c.into(),
            other => TaskError::message(names::CREDENTIALS, other.to_string()),
        }
    }
}

/// A bearer token and when it was signed. Its `Debug` never shows the token.
#[derive(Clone)]
pub struct BearerToken {
    /// The token, `k8s-aws-v1.…`.
    pub token: String,
    /// Its `X-Amz-Date`.
    pub signed_at: SystemTime,
    /// When the credentials that signed it expire (`None`: they do not).
    pub credentials_expiry: Option<SystemTime>,
}

impl BearerToken {
    /// Whether the token may still be sent at `now`: younger than `renew_after`, and
    /// its credentials at least [`CREDENTIALS_MARGIN`] from their expiry.
    #[must_use]
    pub fn usable(&self, now: SystemTime, renew_after: Duration) -> bool {
        let age = now.duration_since(self.signed_at).unwrap_or(Duration::MAX);
        age < renew_after
            && self
                .credentials_expiry
                .is_none_or(|expiry| now + CREDENTIALS_MARGIN < expiry)
    }
}

impl std::fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BearerToken")
            .field("token", &"<redacted>")
            .field("signed_at", &self.signed_at)
            .finish()
    }
}

/// The STS host of a region, in its partition.
#[must_use]
pub fn sts_host(region: &str) -> String {
    let suffix = if region.starts_with("cn-") {
        "amazonaws.com.cn"
    } else {
        "amazonaws.com"
    };
    format!("sts.{region}.{suffix}")
}

/// Presigns `GetCallerIdentity` for `cluster` with `credentials` at `at`, and encodes
/// it as a bearer token. The query parameters come in botocore's order, so the token
/// equals, byte for byte, what `aws eks get-token` makes at the same second.
///
/// # Errors
/// [`TokenError::Input`] for a region or cluster that cannot be signed,
/// [`TokenError::TooLong`] when the token would exceed 4,096 bytes.
pub fn presign(
    credentials: &Credentials,
    region: &str,
    cluster: &str,
    at: SystemTime,
) -> Result<BearerToken, TokenError> {
    let input_err = |message: String| TokenError::Input {
        region: region.to_owned(),
        cluster: cluster.to_owned(),
        message,
    };
    let base = format!(
        "https://{}/?Action=GetCallerIdentity&Version=2011-06-15",
        sts_host(region)
    );
    let mut settings = SigningSettings::default();
    settings.signature_location = SignatureLocation::QueryParams;
    settings.expires_in = Some(Duration::from_secs(60));
    let identity = credentials.clone().into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name("sts")
        .time(at)
        .settings(settings)
        .build()
        .map_err(|e| input_err(e.to_string()))?
        .into();
    let headers = [(CLUSTER_ID_HEADER, cluster)];
    let signable =
        SignableRequest::new("GET", &base, headers.into_iter(), SignableBody::Bytes(&[]))
            .map_err(|e| input_err(e.to_string()))?;
    let (instructions, _signature) = sign(signable, &params)
        .map_err(|e| input_err(e.to_string()))?
        .into_parts();
    let (_, query) = instructions.into_parts();
    let value = |name: &str| {
        query
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_ref())
    };
    let mut url = base;
    for name in [
        "X-Amz-Algorithm",
        "X-Amz-Credential",
        "X-Amz-Date",
        "X-Amz-Expires",
        "X-Amz-SignedHeaders",
        "X-Amz-Security-Token",
        "X-Amz-Signature",
    ] {
        if let Some(v) = value(name) {
            url.push('&');
            url.push_str(name);
            url.push('=');
            url.extend(utf8_percent_encode(v, QUERY_VALUE));
        }
    }
    let token = format!(
        "{TOKEN_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(url)
    );
    if token.len() > MAX_TOKEN_BYTES {
        return Err(TokenError::TooLong(token.len()));
    }
    Ok(BearerToken {
        token,
        signed_at: at,
        credentials_expiry: credentials.expiry(),
    })
}

/// (region, cluster, role) a token is for.
type TokenKey = (String, String, Option<String>);

/// Mints bearer tokens and keeps them for reuse within an invocation and across warm
/// invocations, per (cluster, role), while they are [`BearerToken::usable`]: younger
/// than the renewal age ([`RENEW_AFTER`] unless set shorter) and signed with
/// credentials that are not about to expire.
pub struct BearerTokens {
    credentials: Arc<dyn CredentialSource>,
    clock: Arc<dyn Clock>,
    renew_after: Duration,
    cache: Mutex<HashMap<TokenKey, BearerToken>>,
}

impl BearerTokens {
    /// Tokens signed with credentials from `credentials`, dated by `clock`, renewed
    /// once they are `renew_after` old (at most [`RENEW_AFTER`]).
    pub fn new(
        credentials: Arc<dyn CredentialSource>,
        clock: Arc<dyn Clock>,
        renew_after: Duration,
    ) -> Self {
        Self {
            credentials,
            clock,
            renew_after: renew_after.min(RENEW_AFTER),
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// A token for `cluster` in `region`, as `role_arn` when given.
    ///
    /// # Errors
    /// [`TokenError`] when credentials cannot be had or the token cannot be made.
    pub async fn token(
        &self,
        region: &str,
        cluster: &str,
        role_arn: Option<&str>,
    ) -> Result<BearerToken, TokenError> {
        let key = (
            region.to_owned(),
            cluster.to_owned(),
            role_arn.map(str::to_owned),
        );
        let now = self.clock.now();
        let mut cache = self.cache.lock().await;
        if let Some(t) = cache.get(&key).filter(|t| t.usable(now, self.renew_after)) {
            return Ok(t.clone());
        }
        let creds = self.credentials.credentials(role_arn).await?;
        let t = presign(&creds, region, cluster, now)?;
        cache.insert(key, t.clone());
        Ok(t)
    }
}

/// The token source of one cluster, asked before every request to its API server, so
/// that no request carries a stale token however long an invocation watches (a cache
/// hit but for the first request past the renewal age).
#[derive(Clone)]
pub enum ClusterBearer {
    /// A token the caller made (tests, the CLI's one-off requests).
    Fixed(String),
    /// Tokens from [`BearerTokens`] for one cluster, as one role.
    Renewed {
        /// The token source.
        tokens: Arc<BearerTokens>,
        /// The cluster's region.
        region: String,
        /// The cluster's name.
        cluster: String,
        /// The role the tokens are signed as.
        role_arn: Option<String>,
    },
}

impl ClusterBearer {
    /// The token to send now.
    ///
    /// # Errors
    /// [`TokenError`] when a new token cannot be made.
    pub async fn current(&self) -> Result<String, TokenError> {
        match self {
            Self::Fixed(token) => Ok(token.clone()),
            Self::Renewed {
                tokens,
                region,
                cluster,
                role_arn,
            } => Ok(tokens
                .token(region, cluster, role_arn.as_deref())
                .await?
                .token),
        }
    }
}

impl std::fmt::Debug for ClusterBearer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Fixed(_) => f.write_str("ClusterBearer::Fixed(<redacted>)"),
            Self::Renewed { cluster, .. } => write!(f, "ClusterBearer::Renewed({cluster})"),
        }
    }
}

/// Decodes a token back into its presigned URL (for tests and diagnostics).
#[must_use]
pub fn decode(token: &str) -> Option<String> {
    let b64 = token.strip_prefix(TOKEN_PREFIX)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(b64)
        .ok()?;
    String::from_utf8(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{FakeCredentials, ManualClock};

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn creds(token: Option<&str>) -> Credentials {
        Credentials::new(
            "AKIDEXAMPLE",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            token.map(str::to_owned),
            None,
            "test",
        )
    }

    // Produced by botocore 1.44.8 the way `aws eks get-token` does
    // (scripts/local-world/eks_token.py, signing time fixed at 2024-05-01T12:00:00Z).
    const BOTOCORE_TOKEN: &str = "k8s-aws-v1.aHR0cHM6Ly9zdHMudXMtZWFzdC0xLmFtYXpvbmF3cy5jb20vP0FjdGlvbj1HZXRDYWxsZXJJZGVudGl0eSZWZXJzaW9uPTIwMTEtMDYtMTUmWC1BbXotQWxnb3JpdGhtPUFXUzQtSE1BQy1TSEEyNTYmWC1BbXotQ3JlZGVudGlhbD1BS0lERVhBTVBMRSUyRjIwMjQwNTAxJTJGdXMtZWFzdC0xJTJGc3RzJTJGYXdzNF9yZXF1ZXN0JlgtQW16LURhdGU9MjAyNDA1MDFUMTIwMDAwWiZYLUFtei1FeHBpcmVzPTYwJlgtQW16LVNpZ25lZEhlYWRlcnM9aG9zdCUzQngtazhzLWF3cy1pZCZYLUFtei1TaWduYXR1cmU9MGQyODZhZjdjYzc3MjQ2YjkxZmY1ODk2NWQ4ZTQwMmVlOWQ3MzU4YzNlMjFjZmE2YmE3YTk4YTJhZjQ5MTVmOA";
    const BOTOCORE_SESSION_TOKEN: &str = "k8s-aws-v1.aHR0cHM6Ly9zdHMuZXUtd2VzdC0xLmFtYXpvbmF3cy5jb20vP0FjdGlvbj1HZXRDYWxsZXJJZGVudGl0eSZWZXJzaW9uPTIwMTEtMDYtMTUmWC1BbXotQWxnb3JpdGhtPUFXUzQtSE1BQy1TSEEyNTYmWC1BbXotQ3JlZGVudGlhbD1BS0lERVhBTVBMRSUyRjIwMjQwNTAxJTJGZXUtd2VzdC0xJTJGc3RzJTJGYXdzNF9yZXF1ZXN0JlgtQW16LURhdGU9MjAyNDA1MDFUMTIwMDAwWiZYLUFtei1FeHBpcmVzPTYwJlgtQW16LVNpZ25lZEhlYWRlcnM9aG9zdCUzQngtazhzLWF3cy1pZCZYLUFtei1TZWN1cml0eS1Ub2tlbj1GUW9HJTJGc2Vzc2lvbiUyQnRva2VuJTNEJlgtQW16LVNpZ25hdHVyZT00NTBmNmRlZjg4ZTk0NmQxZjdhOWUyZTkyYWFiMGM5ZTYxM2YxZmNlODlhMTg2ZTdlNjY5OTU1N2UwNDAyMDNm";

    #[test]
    fn token_equals_botocore_byte_for_byte() {
        let t = presign(&creds(None), "us-east-1", "demo", at(1_714_564_800))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(t.token, BOTOCORE_TOKEN);
        assert!(!t.token.contains('='), "no padding");
    }

    #[test]
    fn session_token_equals_botocore_byte_for_byte() {
        let t = presign(
            &creds(Some("FQoG/session+token=")),
            "eu-west-1",
            "c",
            at(1_714_564_800),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(t.token, BOTOCORE_SESSION_TOKEN);
        let url = decode(&t.token).unwrap_or_default();
        assert!(url.contains("X-Amz-SignedHeaders=host%3Bx-k8s-aws-id&X-Amz-Security-Token=FQoG%2Fsession%2Btoken%3D&X-Amz-Signature="), "{url}");
    }

    #[test]
    fn the_cluster_name_changes_the_signature() {
        let a = presign(&creds(None), "us-east-1", "a", at(1_714_564_800))
            .map(|t| t.token)
            .unwrap_or_default();
        let b = presign(&creds(None), "us-east-1", "b", at(1_714_564_800))
            .map(|t| t.token)
            .unwrap_or_default();
        assert_ne!(a, b);
    }

    #[test]
    fn china_regions_use_their_partition() {
        assert_eq!(sts_host("cn-north-1"), "sts.cn-north-1.amazonaws.com.cn");
    }

    #[test]
    fn oversized_tokens_are_refused() {
        let huge = "x".repeat(4000);
        assert!(matches!(
            presign(&creds(Some(&huge)), "us-east-1", "c", at(0)),
            Err(TokenError::TooLong(_))
        ));
    }

    #[test]
    fn debug_never_shows_the_token() {
        let t = presign(&creds(None), "us-east-1", "c", at(0)).unwrap_or_else(|e| panic!("{e}"));
        assert!(!format!("{t:?}").contains("k8s-aws-v1"));
    }

    #[tokio::test]
    async fn tokens_are_reused_then_renewed_before_expiry() {
        let source = Arc::new(FakeCredentials::fixed(creds(None)));
        let clock = Arc::new(ManualClock::new(at(1_714_564_800)));
        let tokens = BearerTokens::new(source.clone(), clock.clone(), RENEW_AFTER);
        let first = tokens
            .token("us-east-1", "c", None)
            .await
            .map(|t| t.token)
            .unwrap_or_default();
        clock.advance(Duration::from_secs(9 * 60));
        let again = tokens
            .token("us-east-1", "c", None)
            .await
            .map(|t| t.token)
            .unwrap_or_default();
        assert_eq!(first, again);
        assert_eq!(source.asked(), 1);
        clock.advance(Duration::from_secs(60));
        let renewed = tokens
            .token("us-east-1", "c", None)
            .await
            .map(|t| t.token)
            .unwrap_or_default();
        assert_ne!(first, renewed);
        assert_eq!(source.asked(), 2);
        let other = tokens
            .token("us-east-1", "other", None)
            .await
            .map(|t| t.token)
            .unwrap_or_default();
        assert_ne!(renewed, other);
    }

    /// A shorter renewal age (a cluster whose authenticator accepts tokens for less
    /// than 15 minutes) and credentials close to their expiry both renew the token.
    #[tokio::test]
    async fn tokens_are_renewed_at_the_set_age_and_before_their_credentials_expire() {
        let start = at(1_714_564_800);
        let clock = Arc::new(ManualClock::new(start));
        let short = BearerTokens::new(
            Arc::new(FakeCredentials::fixed(creds(None))),
            clock.clone(),
            Duration::from_secs(3),
        );
        let first = short
            .token("us-east-1", "c", None)
            .await
            .map(|t| t.token)
            .ok();
        clock.advance(Duration::from_secs(2));
        let again = short
            .token("us-east-1", "c", None)
            .await
            .map(|t| t.token)
            .ok();
        assert_eq!(first, again);
        clock.advance(Duration::from_secs(1));
        let renewed = short
            .token("us-east-1", "c", None)
            .await
            .map(|t| t.token)
            .ok();
        assert_ne!(first, renewed);

        // Assumed-role credentials that expire 4 minutes after the token is made: the
        // token is reused for 3 minutes, then renewed (with new credentials).
        let expiring = Credentials::new(
            "ASIAEXAMPLE",
            "secret",
            Some("session".into()),
            Some(start + Duration::from_secs(3 + 4 * 60)),
            "test",
        );
        let source = Arc::new(FakeCredentials::fixed(expiring));
        let tokens = BearerTokens::new(source.clone(), clock.clone(), RENEW_AFTER);
        let first = tokens
            .token("us-east-1", "c", Some("arn:aws:iam::1:role/r"))
            .await
            .map(|t| t.token)
            .ok();
        clock.advance(Duration::from_secs(2 * 60));
        let again = tokens
            .token("us-east-1", "c", Some("arn:aws:iam::1:role/r"))
            .await
            .map(|t| t.token)
            .ok();
        assert_eq!((first.clone(), source.asked()), (again, 1));
        clock.advance(Duration::from_secs(60));
        let renewed = tokens
            .token("us-east-1", "c", Some("arn:aws:iam::1:role/r"))
            .await
            .map(|t| t.token)
            .ok();
        assert_ne!(first, renewed);
        assert_eq!(source.asked(), 2);
    }
}
