//! Time as the contract writes it: UTC seconds for Scheduler's `at()` and RFC 3339 as
//! Kubernetes writes it.

use std::time::SystemTime;

/// `yyyy-mm-ddThh:mm:ss` in UTC, whole seconds: the form EventBridge Scheduler's
/// `at()` and Kubernetes' timestamps (with a `Z`) take.
#[must_use]
pub fn utc_seconds(t: SystemTime) -> String {
    let t = time::OffsetDateTime::from(t);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// An RFC 3339 timestamp (as Kubernetes and the worker's tags write them) held in a
/// JSON string; `None` for anything else.
#[must_use]
pub fn rfc3339(v: &serde_json::Value) -> Option<SystemTime> {
    v.as_str()
        .and_then(|t| {
            time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok()
        })
        .map(Into::into)
}
