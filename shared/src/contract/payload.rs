//! The payloads: the native integrations' parameter names and meanings, parsed once
//! into typed inputs, with an `EksTaskWorker.InvalidInput` error naming the field and what
//! to fix for anything malformed. The user's `Job` and `RequestBody` stay JSON values:
//! they pass to the API server as written.

use base64::Engine;
use serde_json::{Map, Value};
use url::Url;

use crate::contract::error::TaskError;
use crate::contract::stuck_policy::{Hold, StuckPolicy};

/// The longest task token Step Functions issues.
pub const MAX_TASK_TOKEN_CHARS: usize = 2048;

/// Whether `t` can be a task token Step Functions issued: 1 to
/// [`MAX_TASK_TOKEN_CHARS`] characters. The one rule for a token, wherever it arrives
/// (a payload, a poll state).
#[must_use]
pub fn is_task_token(t: &str) -> bool {
    !t.is_empty() && t.chars().count() <= MAX_TASK_TOKEN_CHARS
}

/// What a role field must be, said the same way for every field.
pub const ROLE_ARN_FORMAT: &str = "must be an IAM role ARN, arn:aws:iam::<account>:role/<name>";

/// Whether `arn` is an IAM ARN (`arn:<partition>:iam::<account>:<kind>/<name>`) of one of
/// `kinds` (`"role"`, `"user"`). The one rule for an IAM principal's ARN.
#[must_use]
pub fn is_iam_arn(arn: &str, kinds: &[&str]) -> bool {
    let mut parts = arn.split(':');
    parts.next() == Some("arn")
        && parts.next().is_some_and(|p| p.starts_with("aws"))
        && parts.next() == Some("iam")
        && parts.nth(2).is_some_and(|resource| {
            kinds.iter().any(|k| {
                resource
                    .strip_prefix(k)
                    .and_then(|r| r.strip_prefix('/'))
                    .is_some_and(|name| !name.is_empty())
            })
        })
}

/// A role field's value (`RoleArn`, `NodeRole`, `PodExecutionRoleArn`).
///
/// # Errors
/// `EksTaskWorker.InvalidInput` naming `field` when `arn` is not an IAM role ARN.
pub fn role_arn(field: &str, arn: &str) -> Result<String, TaskError> {
    if is_iam_arn(arn, &["role"]) {
        Ok(arn.to_owned())
    } else {
        Err(TaskError::invalid_input(field, ROLE_ARN_FORMAT))
    }
}

type Fields = Map<String, Value>;

/// Where the cluster is and how to reach it.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterRef {
    /// `ClusterName`: the EKS cluster, also the token's `x-k8s-aws-id`.
    pub name: String,
    /// `Endpoint`: the API server URL; looked up with DescribeCluster when absent.
    pub endpoint: Option<Url>,
    /// `CertificateAuthority`: the cluster CA as PEM; looked up when absent.
    pub certificate_authority: Option<String>,
    /// `RoleArn` (the worker's own): assume this role for the token.
    pub role_arn: Option<String>,
    /// `Region` (the worker's own): the cluster's region, if not the function's.
    pub region: Option<String>,
}

/// `LogOptions`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LogOptions {
    /// `RetrieveLogs`: read the Job's container logs when it finishes.
    pub retrieve_logs: bool,
    /// `RawLogs`: keep logs as text even when they parse as JSON.
    pub raw_logs: bool,
    /// `LogParameters`: query parameters for the read-log API.
    pub log_parameters: Vec<(String, String)>,
    /// `ArchiveUri` (the worker's own): archive every container's whole log here.
    pub archive: Option<crate::contract::archive_location::ArchiveLocation>,
}

impl LogOptions {
    /// The first value given for a log parameter.
    #[must_use]
    pub fn parameter(&self, name: &str) -> Option<&str> {
        self.log_parameters
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// `ExecutionArn` (the worker's own, optional): the execution a task belongs to, for
/// the log lines (`"ExecutionArn.$": "$$.Execution.Id"`).
///
/// # Errors
/// `EksTaskWorker.InvalidInput` when it is not an execution ARN.
pub fn execution_arn(fields: &Fields) -> Result<Option<String>, TaskError> {
    match opt_string(fields, "ExecutionArn")? {
        None => Ok(None),
        Some(a)
            if a.starts_with("arn:")
                && a.split(':').nth(5) == Some("execution")
                && a.split(':').count() >= 8
                && a.len() <= 2048 =>
        {
            Ok(Some(a.to_owned()))
        }
        Some(_) => Err(TaskError::invalid_input(
            "ExecutionArn",
            "must be an execution ARN: pass \"ExecutionArn.$\": \"$$.Execution.Id\"",
        )),
    }
}

/// The run-job payload.
#[derive(Debug, Clone, PartialEq)]
pub struct RunJobInput {
    /// `ExecutionArn` (the worker's own): for the log lines.
    pub execution: Option<String>,
    /// The cluster.
    pub cluster: ClusterRef,
    /// `Namespace`, default `default`.
    pub namespace: String,
    /// `Job`: the batch/v1 Job manifest, as the user wrote it.
    pub job: Value,
    /// `LogOptions`.
    pub log_options: LogOptions,
    /// `TaskToken`: present in the callback pattern.
    pub task_token: Option<String>,
    /// `InlineWaitSeconds` (the worker's own): how long to watch the Job in this
    /// invocation before handing it to the poller; the deployment's default otherwise.
    pub inline_wait_seconds: Option<u64>,
    /// `PollCurveSeconds` (the worker's own): the poll curve for this Job, checked
    /// against the deployment's minimum when it is used.
    pub poll_curve_seconds: Option<Vec<u64>>,
    /// `StuckPolicy` (the worker's own): when a stuck Job fails its task.
    pub stuck_policy: StuckPolicy,
    /// `WaitForCompletion` ([`wait_for_completion`]): answer once the Job ended (the
    /// `.sync` integration), or with the created Job.
    pub wait_for_completion: bool,
}

/// The HTTP methods `call` accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallMethod {
    /// GET
    Get,
    /// POST
    Post,
    /// PUT
    Put,
    /// DELETE
    Delete,
    /// HEAD
    Head,
    /// PATCH
    Patch,
}

impl CallMethod {
    /// The method's name on the wire.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            CallMethod::Get => "GET",
            CallMethod::Post => "POST",
            CallMethod::Put => "PUT",
            CallMethod::Delete => "DELETE",
            CallMethod::Head => "HEAD",
            CallMethod::Patch => "PATCH",
        }
    }
}

/// How a PATCH body is to be read by the API server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    /// `application/merge-patch+json` (the default).
    Merge,
    /// `application/json-patch+json`.
    Json,
    /// `application/strategic-merge-patch+json`.
    Strategic,
    /// `application/apply-patch+yaml` (server-side apply).
    Apply,
}

impl PatchType {
    /// The content type that selects this patch type.
    #[must_use]
    pub fn content_type(self) -> &'static str {
        match self {
            PatchType::Merge => "application/merge-patch+json",
            PatchType::Json => "application/json-patch+json",
            PatchType::Strategic => "application/strategic-merge-patch+json",
            PatchType::Apply => "application/apply-patch+yaml",
        }
    }
}

/// The call payload.
#[derive(Debug, Clone, PartialEq)]
pub struct CallInput {
    /// The cluster.
    pub cluster: ClusterRef,
    /// `Method`.
    pub method: CallMethod,
    /// `Path`: starts with `/`, no query.
    pub path: String,
    /// `QueryParameters`, flattened to (name, value) pairs in order.
    pub query: Vec<(String, String)>,
    /// `RequestBody`: sent as JSON, or as written when it is a string.
    pub body: Option<Value>,
    /// `PatchType` (the worker's own): for PATCH, default merge.
    pub patch_type: PatchType,
    /// `TaskToken`: present in the callback pattern.
    pub task_token: Option<String>,
}

const CLUSTER_FIELDS: [&str; 5] = [
    "ClusterName",
    "CertificateAuthority",
    "Endpoint",
    "RoleArn",
    "Region",
];

fn object<'a>(v: &'a Value, field: &str) -> Result<&'a Fields, TaskError> {
    v.as_object().ok_or_else(|| {
        TaskError::invalid_input(field, format!("must be a JSON object, got {}", kind(v)))
    })
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn reject_unknown(fields: &Fields, allowed: &[&str], at: &str) -> Result<(), TaskError> {
    match fields.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(TaskError::invalid_input(
            &join(at, k),
            format!(
                "is not a known parameter; the known ones are {}",
                allowed.join(", ")
            ),
        )),
        None => Ok(()),
    }
}

fn join(at: &str, k: &str) -> String {
    if at.is_empty() {
        k.to_owned()
    } else {
        format!("{at}.{k}")
    }
}

fn opt_string<'a>(fields: &'a Fields, name: &str) -> Result<Option<&'a str>, TaskError> {
    match fields.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(TaskError::invalid_input(
            name,
            format!("must be a string, got {}", kind(other)),
        )),
    }
}

fn req_string<'a>(fields: &'a Fields, name: &str) -> Result<&'a str, TaskError> {
    match opt_string(fields, name)? {
        Some(s) if !s.trim().is_empty() => Ok(s),
        Some(_) => Err(TaskError::invalid_input(name, "must not be empty")),
        None => Err(TaskError::invalid_input(name, "is required")),
    }
}

fn opt_bool(fields: &Fields, name: &str, at: &str) -> Result<bool, TaskError> {
    match fields.get(name) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => Ok(true),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => Ok(false),
        Some(other) => Err(TaskError::invalid_input(
            &join(at, name),
            format!("must be true or false, got {}", kind(other)),
        )),
    }
}

/// Whether `s` is a DNS label (RFC 1123), as Kubernetes names namespaces: 1 to 63
/// lowercase letters, digits and '-', not starting or ending with '-'.
#[must_use]
pub fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// A Kubernetes object name (RFC 1123 subdomain, as a Job's): at most 253 characters,
/// dot-separated DNS labels, so never `.`, `..` or a path.
#[must_use]
pub fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns_label)
}

/// `Namespace`, default `default`: a DNS label.
///
/// # Errors
/// `EksTaskWorker.InvalidInput` on `Namespace`.
pub fn namespace(fields: &Fields) -> Result<String, TaskError> {
    match opt_string(fields, "Namespace")? {
        None => Ok("default".to_owned()),
        Some(ns) if is_dns_label(ns) => Ok(ns.to_owned()),
        Some(ns) => Err(TaskError::invalid_input(
            "Namespace",
            format!(
                "{ns:?} is not a namespace name (lowercase letters, digits and '-', at most 63)"
            ),
        )),
    }
}

/// An EKS resource name as EKS takes it (a cluster's, up to 100 characters; a
/// nodegroup's or Fargate profile's, up to 63): letters, digits, `-` and `_`, starting
/// with a letter or digit; so never a path (`/`, `.`, `..`, `%2F`).
///
/// # Errors
/// `EksTaskWorker.InvalidInput` naming `field`.
pub fn eks_name(field: &str, name: &str, max: usize) -> Result<(), TaskError> {
    if name.is_empty()
        || name.len() > max
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        || !name.starts_with(|c: char| c.is_ascii_alphanumeric())
    {
        return Err(TaskError::invalid_input(
            field,
            format!(
                "must be 1-{max} characters of letters, digits, '-' and '_', starting with a \
                letter or digit"
            ),
        ));
    }
    Ok(())
}

/// Parses and validates the cluster fields common to every payload.
///
/// # Errors
/// `EksTaskWorker.InvalidInput` naming the bad field.
pub fn cluster_ref(fields: &Fields) -> Result<ClusterRef, TaskError> {
    let name = req_string(fields, "ClusterName")?;
    eks_name("ClusterName", name, 100)?;
    let endpoint = opt_string(fields, "Endpoint")?
        .map(endpoint_url)
        .transpose()?;
    let certificate_authority = opt_string(fields, "CertificateAuthority")?
        .map(certificate_pem)
        .transpose()?;
    let role_arn = opt_string(fields, "RoleArn")?
        .map(|arn| role_arn("RoleArn", arn))
        .transpose()?;
    let region = opt_string(fields, "Region")?
        .map(|r| {
            let ok = !r.is_empty()
                && r.len() <= 32
                && r.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
            if ok {
                Ok(r.to_owned())
            } else {
                Err(TaskError::invalid_input(
                    "Region",
                    "must be an AWS region name such as us-east-1",
                ))
            }
        })
        .transpose()?
        // An EKS endpoint names its region (`<id>.<shard>.<region>.eks.amazonaws.com`): the
        // cluster is described, and its token signed, there.
        .or_else(|| endpoint.as_ref().and_then(eks_endpoint_region));
    Ok(ClusterRef {
        name: name.to_owned(),
        endpoint,
        certificate_authority,
        role_arn,
        region,
    })
}

/// The region an EKS API server endpoint's host names (`….<region>.eks.amazonaws.com`,
/// or `.eks.amazonaws.com.cn` in China); none for any other host (IPv6 clusters'
/// `api.aws` hosts are not read: give `Region` for those).
#[must_use]
pub fn eks_endpoint_region(endpoint: &Url) -> Option<String> {
    let host = endpoint.host_str()?.to_ascii_lowercase();
    let rest = host
        .strip_suffix(".eks.amazonaws.com")
        .or_else(|| host.strip_suffix(".eks.amazonaws.com.cn"))?;
    let region = rest.rsplit('.').next()?;
    let parts: Vec<&str> = region.split('-').collect();
    let well_formed = parts.len() >= 3
        && region.len() <= 32
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        })
        && parts[0].len() == 2
        && parts[0].bytes().all(|b| b.is_ascii_lowercase())
        && parts
            .last()
            .is_some_and(|p| p.bytes().all(|b| b.is_ascii_digit()));
    (well_formed && rest.contains('.')).then(|| region.to_owned())
}

/// Validates an API server URL: https, a host, no query or fragment.
///
/// # Errors
/// `EksTaskWorker.InvalidInput` on `Endpoint`.
pub fn endpoint_url(s: &str) -> Result<Url, TaskError> {
    let url = Url::parse(s).map_err(|e| {
        TaskError::invalid_input(
            "Endpoint",
            format!("is not a URL ({e}); expected https://<host>"),
        )
    })?;
    if url.scheme() != "https" {
        return Err(TaskError::invalid_input(
            "Endpoint",
            format!("must use https, not {}", url.scheme()),
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(TaskError::invalid_input("Endpoint", "has no host"));
    }
    if url.query().is_some()
        || url.fragment().is_some()
        || !url.username().is_empty()
        || url.password().is_some()
        || url.path() != "/"
    {
        return Err(TaskError::invalid_input(
            "Endpoint",
            "must be an origin, https://<host>[:port], without path, query, fragment or \
            user: every request's path is the worker's own",
        ));
    }
    Ok(url)
}

/// Decodes `CertificateAuthority` (base64 of PEM, as DescribeCluster returns it, or PEM
/// itself) and checks that it holds at least one X.509 certificate. Returns the PEM.
///
/// # Errors
/// `EksTaskWorker.InvalidInput` on `CertificateAuthority`.
pub fn certificate_pem(s: &str) -> Result<String, TaskError> {
    let field = "CertificateAuthority";
    let pem = if s.trim_start().starts_with("-----BEGIN") {
        s.to_owned()
    } else {
        let compact: String = s.chars().filter(|c| !c.is_ascii_whitespace()).collect();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(&compact)
            .map_err(|e| {
                TaskError::invalid_input(
                    field,
                    format!(
                        "is not base64 ({e}); expected the cluster's certificateAuthority.data"
                    ),
                )
            })?;
        String::from_utf8(bytes)
            .map_err(|_| TaskError::invalid_input(field, "does not decode to PEM text"))?
    };
    let ders = crate::contract::certificates::parse_certificates(&pem)
        .map_err(|m| TaskError::invalid_input(field, m))?;
    if ders.is_empty() {
        return Err(TaskError::invalid_input(
            field,
            "holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
        ));
    }
    Ok(pem)
}

/// Parses a `map of string to list of strings` (`LogParameters`, `QueryParameters`)
/// into ordered pairs. Scalars inside the lists are taken as their text.
///
/// # Errors
/// `EksTaskWorker.InvalidInput` on the field.
pub fn string_lists(v: &Value, field: &str) -> Result<Vec<(String, String)>, TaskError> {
    let mut out = Vec::new();
    for (k, list) in object(v, field)? {
        let at = join(field, k);
        let items = list.as_array().ok_or_else(|| {
            TaskError::invalid_input(
                &at,
                format!("must be a list of strings, got {}", kind(list)),
            )
        })?;
        for (i, item) in items.iter().enumerate() {
            let text = match item {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                other => {
                    return Err(TaskError::invalid_input(
                        &format!("{at}[{i}]"),
                        format!("must be a string, got {}", kind(other)),
                    ))
                }
            };
            out.push((k.clone(), text));
        }
    }
    Ok(out)
}

/// The read-log API's parameters (`PodLogOptions`) a payload may set. `follow` and
/// `insecureSkipTLSVerifyBackend` are refused with their own reasons.
const LOG_PARAMETERS: [&str; 9] = [
    "container",
    "tailLines",
    "limitBytes",
    "sinceSeconds",
    "sinceTime",
    "timestamps",
    "previous",
    "pretty",
    "stream",
];

fn log_options(v: Option<&Value>) -> Result<LogOptions, TaskError> {
    let Some(v) = v.filter(|v| !v.is_null()) else {
        return Ok(LogOptions::default());
    };
    let at = "LogOptions";
    let fields = object(v, at)?;
    reject_unknown(
        fields,
        &["RetrieveLogs", "RawLogs", "LogParameters", "ArchiveUri"],
        at,
    )?;
    let archive = opt_string(fields, "ArchiveUri")?
        .map(|u| {
            crate::contract::archive_location::ArchiveLocation::parse(u)
                .map_err(|m| TaskError::invalid_input("LogOptions.ArchiveUri", m))
        })
        .transpose()?;
    let log_parameters = match fields.get("LogParameters") {
        None | Some(Value::Null) => Vec::new(),
        Some(p) => string_lists(p, "LogOptions.LogParameters")?,
    };
    check_log_parameters(&log_parameters)?;
    Ok(LogOptions {
        retrieve_logs: opt_bool(fields, "RetrieveLogs", at)?,
        raw_logs: opt_bool(fields, "RawLogs", at)?,
        log_parameters,
        archive,
    })
}

/// Checks read-log parameters as the read-log API takes them, and what the worker
/// refuses (`follow`, `insecureSkipTLSVerifyBackend`): in a payload and again in every
/// poll state.
///
/// # Errors
/// `EksTaskWorker.InvalidInput` naming `LogOptions.LogParameters.<name>`.
pub fn check_log_parameters(log_parameters: &[(String, String)]) -> Result<(), TaskError> {
    for (k, value) in log_parameters {
        let field = format!("LogOptions.LogParameters.{k}");
        if k == "follow" {
            return Err(TaskError::invalid_input(
                &field,
                "is not supported: logs are read once the Job has finished",
            ));
        }
        if k == "insecureSkipTLSVerifyBackend" {
            return Err(TaskError::invalid_input(
                &field,
                "is refused: the log would be read from a kubelet whose certificate is not \
                checked",
            ));
        }
        if !LOG_PARAMETERS.contains(&k.as_str()) {
            return Err(TaskError::invalid_input(
                &field,
                format!(
                    "is not a read-log parameter; the known ones are {}",
                    LOG_PARAMETERS.join(", ")
                ),
            ));
        }
        match k.as_str() {
            "tailLines" | "limitBytes" | "sinceSeconds" => {
                let n: i64 = value.parse().map_err(|_| {
                    TaskError::invalid_input(
                        &field,
                        format!("must be a whole number, got {value:?}"),
                    )
                })?;
                let min = if k == "tailLines" { 0 } else { 1 };
                if n < min {
                    return Err(TaskError::invalid_input(
                        &field,
                        format!("must be at least {min}, got {n}"),
                    ));
                }
            }
            "stream" if !["All", "Stdout", "Stderr"].contains(&value.as_str()) => {
                return Err(TaskError::invalid_input(
                    &field,
                    format!("must be \"All\", \"Stdout\" or \"Stderr\", got {value:?}"),
                ));
            }
            "timestamps" | "previous" | "pretty" if value != "true" && value != "false" => {
                return Err(TaskError::invalid_input(
                    &field,
                    format!("must be \"true\" or \"false\", got {value:?}"),
                ));
            }
            "sinceTime"
                if time::OffsetDateTime::parse(
                    value,
                    &time::format_description::well_known::Rfc3339,
                )
                .is_err() =>
            {
                return Err(TaskError::invalid_input(
                    &field,
                    format!("must be an RFC 3339 time, got {value:?}"),
                ));
            }
            _ => {}
        }
    }
    if log_parameters
        .iter()
        .filter(|(k, _)| k != "container")
        .map(|(k, _)| k)
        .collect::<std::collections::HashSet<_>>()
        .len()
        < log_parameters
            .iter()
            .filter(|(k, _)| k != "container")
            .count()
    {
        return Err(TaskError::invalid_input(
            "LogOptions.LogParameters",
            "gives a parameter more than one value",
        ));
    }
    Ok(())
}

fn task_token(fields: &Fields) -> Result<Option<String>, TaskError> {
    match opt_string(fields, "TaskToken")? {
        None => Ok(None),
        Some(t) if is_task_token(t) => Ok(Some(t.to_owned())),
        Some("") => Err(TaskError::invalid_input(
            "TaskToken",
            "must not be empty; pass \"TaskToken.$\": \"$$.Task.Token\"",
        )),
        Some(_) => Err(TaskError::invalid_input(
            "TaskToken",
            format!("is longer than {MAX_TASK_TOKEN_CHARS} characters"),
        )),
    }
}

/// The largest Job manifest taken (bytes, serialized): the API server's request limit
/// is larger, but a Job this big is a mistake, and its result could not be returned.
pub const MAX_JOB_BYTES: usize = 1024 * 1024;
/// The deepest nesting a Job manifest may have.
pub const MAX_JOB_DEPTH: usize = 64;

fn nesting(v: &Value) -> usize {
    match v {
        Value::Array(a) => 1 + a.iter().map(nesting).max().unwrap_or(0),
        Value::Object(o) => 1 + o.values().map(nesting).max().unwrap_or(0),
        _ => 0,
    }
}

fn job_manifest(v: Option<&Value>) -> Result<Value, TaskError> {
    let mut job = match v {
        None | Some(Value::Null) => {
            return Err(TaskError::invalid_input(
                "Job",
                "is required: a batch/v1 Job as JSON",
            ))
        }
        Some(Value::String(s)) => serde_json::from_str::<Value>(s).map_err(|e| {
            TaskError::invalid_input("Job", format!("is a string that is not JSON ({e})"))
        })?,
        Some(other) => other.clone(),
    };
    let size = crate::contract::budget::serialized_len(&job);
    if size > MAX_JOB_BYTES {
        return Err(TaskError::invalid_input(
            "Job",
            format!(
                "is {size} bytes; a Job manifest may be at most {MAX_JOB_BYTES} (put data in a \
                ConfigMap or S3)"
            ),
        ));
    }
    let depth = nesting(&job);
    if depth > MAX_JOB_DEPTH {
        return Err(TaskError::invalid_input(
            "Job",
            format!("nests {depth} levels deep; at most {MAX_JOB_DEPTH}"),
        ));
    }
    // The API server takes a Job without `apiVersion` or `kind` as the request path's
    // (batch/v1, Job): so does the worker, which posts to that path. A wrong one it
    // refuses, as the API server does.
    if let Some(map) = job.as_object_mut() {
        map.entry("apiVersion")
            .or_insert_with(|| Value::from("batch/v1"));
        map.entry("kind").or_insert_with(|| Value::from("Job"));
    }
    let fields = object(&job, "Job")?;
    if let Some(other) = fields.get("apiVersion").filter(|v| *v != "batch/v1") {
        return Err(TaskError::invalid_input(
            "Job.apiVersion",
            format!("must be \"batch/v1\" (or left out), got {other}"),
        ));
    }
    if let Some(other) = fields.get("kind").filter(|v| *v != "Job") {
        return Err(TaskError::invalid_input(
            "Job.kind",
            format!("must be \"Job\" (or left out), got {other}"),
        ));
    }
    let meta = match fields.get("metadata") {
        Some(m) => object(m, "Job.metadata")?,
        None => {
            return Err(TaskError::invalid_input(
                "Job.metadata",
                "is required, with a name or generateName",
            ))
        }
    };
    let named = |k: &str| {
        meta.get(k)
            .and_then(Value::as_str)
            .is_some_and(|s| !s.is_empty())
    };
    if !named("name") && !named("generateName") {
        return Err(TaskError::invalid_input(
            "Job.metadata",
            "needs a name or a generateName",
        ));
    }
    for k in ["labels", "annotations"] {
        if let Some(m) = meta.get(k) {
            object(m, &format!("Job.metadata.{k}"))?;
        }
    }
    match fields.get("spec") {
        Some(s) => {
            object(s, "Job.spec")?;
        }
        None => return Err(TaskError::invalid_input("Job.spec", "is required")),
    }
    Ok(job)
}

/// Parses a run-job payload.
///
/// # Errors
/// `EksTaskWorker.InvalidInput` naming the bad field.
pub fn parse_run_job(payload: &Value) -> Result<RunJobInput, TaskError> {
    let fields = object(payload, "$")?;
    let mut allowed = CLUSTER_FIELDS.to_vec();
    allowed.extend([
        "Namespace",
        "Job",
        "LogOptions",
        "TaskToken",
        "InlineWaitSeconds",
        "PollCurveSeconds",
        "StuckPolicy",
        "ExecutionArn",
        "WaitForCompletion",
    ]);
    reject_unknown(fields, &allowed, "")?;
    let execution = execution_arn(fields)?;
    let namespace = namespace(fields)?;
    let inline_wait_seconds = match fields.get("InlineWaitSeconds") {
        None | Some(Value::Null) => None,
        Some(v) => Some(v.as_u64().filter(|n| *n <= 900).ok_or_else(|| {
            TaskError::invalid_input(
                "InlineWaitSeconds",
                "must be a whole number of seconds from 0 to 900",
            )
        })?),
    };
    let poll_curve_seconds = match fields.get("PollCurveSeconds") {
        None | Some(Value::Null) => None,
        Some(Value::Array(items)) if !items.is_empty() => Some(
            items
                .iter()
                .map(Value::as_u64)
                .collect::<Option<Vec<u64>>>()
                .ok_or_else(|| {
                    TaskError::invalid_input(
                        "PollCurveSeconds",
                        "must be a list of whole numbers of seconds",
                    )
                })?,
        ),
        Some(_) => {
            return Err(TaskError::invalid_input(
                "PollCurveSeconds",
                "must be a non-empty list of whole numbers of seconds, e.g. [60, 120, 300]",
            ))
        }
    };
    let stuck_policy = match fields.get("StuckPolicy") {
        None | Some(Value::Null) => StuckPolicy::default(),
        Some(p) => {
            let p = object(p, "StuckPolicy")?;
            let keys: Vec<&str> = Hold::ALL.iter().map(|h| h.policy_key()).collect();
            reject_unknown(p, &keys, "StuckPolicy")?;
            let mut policy = StuckPolicy::default();
            for hold in Hold::ALL {
                let k = hold.policy_key();
                let limit = match p.get(k) {
                    None | Some(Value::Null) => None,
                    Some(v) => Some(v.as_u64().ok_or_else(|| {
                        TaskError::invalid_input(
                            &format!("StuckPolicy.{k}"),
                            "must be a whole number of seconds",
                        )
                    })?),
                };
                policy = policy.with(hold, limit);
            }
            policy
        }
    };
    Ok(RunJobInput {
        execution,
        stuck_policy,
        poll_curve_seconds,
        cluster: cluster_ref(fields)?,
        namespace,
        job: job_manifest(fields.get("Job"))?,
        log_options: log_options(fields.get("LogOptions"))?,
        wait_for_completion: wait_for_completion(fields)?,
        task_token: task_token(fields)?,
        inline_wait_seconds,
    })
}

/// `WaitForCompletion` (the worker's own): with a `TaskToken`, whether the answer waits
/// for the end (default `true`: the `.sync` integration) or comes at once with what the
/// start returned (`false`: the integration without `.sync`, migrated to the callback
/// pattern). Without a token the invocation's result comes at once, so `true` is refused.
///
/// # Errors
/// `EksTaskWorker.InvalidInput` for a value that is not a boolean, or `true` without a
/// `TaskToken`.
pub fn wait_for_completion(fields: &Fields) -> Result<bool, TaskError> {
    let token = fields.get("TaskToken").is_some_and(|t| !t.is_null());
    match fields.get("WaitForCompletion") {
        None | Some(Value::Null) => Ok(token),
        Some(Value::Bool(true)) if !token => Err(TaskError::invalid_input(
            "WaitForCompletion",
            "true needs a TaskToken (the callback pattern): without one the invocation answers at once",
        )),
        Some(Value::Bool(b)) => Ok(*b),
        Some(other) => Err(TaskError::invalid_input(
            "WaitForCompletion",
            format!("must be true or false, got {}", kind(other)),
        )),
    }
}

/// A call answers once: requests the API server would answer with a stream that does
/// not end (`watch`, a followed log, the legacy `/watch/` paths) are refused.
fn refuse_streams(path: &str, query: &[(String, String)]) -> Result<(), TaskError> {
    let on = |name: &str| {
        query.iter().any(|(k, v)| {
            // As the API server reads a boolean parameter: only `false` and `0` are off.
            k == name && !matches!(v.to_ascii_lowercase().as_str(), "false" | "0")
        })
    };
    let segments: Vec<&str> = path.split('/').collect();
    let legacy_watch = match segments.get(1) {
        Some(&"api") => segments.get(3) == Some(&"watch"),
        Some(&"apis") => segments.get(4) == Some(&"watch"),
        _ => false,
    };
    if on("watch") || on("follow") || legacy_watch {
        return Err(TaskError::invalid_input(
            "QueryParameters",
            "watch and follow are not supported: a call answers once with the whole response; \
             list (with resourceVersion and limit) or read the log without follow instead",
        ));
    }
    Ok(())
}

/// Parses a call payload.
///
/// # Errors
/// `EksTaskWorker.InvalidInput` naming the bad field.
pub fn parse_call(payload: &Value) -> Result<CallInput, TaskError> {
    let fields = object(payload, "$")?;
    let mut allowed = CLUSTER_FIELDS.to_vec();
    allowed.extend([
        "Method",
        "Path",
        "QueryParameters",
        "RequestBody",
        "PatchType",
        "TaskToken",
        "ExecutionArn",
    ]);
    reject_unknown(fields, &allowed, "")?;
    execution_arn(fields)?;
    let method = match req_string(fields, "Method")?.to_ascii_uppercase().as_str() {
        "GET" => CallMethod::Get,
        "POST" => CallMethod::Post,
        "PUT" => CallMethod::Put,
        "DELETE" => CallMethod::Delete,
        "HEAD" => CallMethod::Head,
        "PATCH" => CallMethod::Patch,
        other => {
            return Err(TaskError::invalid_input(
                "Method",
                format!("{other:?} is not one of GET, POST, PUT, DELETE, HEAD, PATCH"),
            ))
        }
    };
    let path = req_string(fields, "Path")?;
    if !path.starts_with('/') {
        return Err(TaskError::invalid_input(
            "Path",
            format!("must start with '/', got {path:?}"),
        ));
    }
    if path.contains(['?', '#']) || path.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(TaskError::invalid_input(
            "Path",
            "must be a plain path: put query parameters in QueryParameters, no spaces",
        ));
    }
    if path.split('/').any(|seg| seg == ".." || seg == ".") {
        return Err(TaskError::invalid_input(
            "Path",
            "must not contain '.' or '..' segments",
        ));
    }
    let query = match fields.get("QueryParameters") {
        None | Some(Value::Null) => Vec::new(),
        Some(q) => string_lists(q, "QueryParameters")?,
    };
    refuse_streams(path, &query)?;
    let body = fields.get("RequestBody").filter(|b| !b.is_null()).cloned();
    if body.is_some() && matches!(method, CallMethod::Get | CallMethod::Head) {
        return Err(TaskError::invalid_input(
            "RequestBody",
            format!("is not allowed with {}", method.as_str()),
        ));
    }
    let patch_type = match opt_string(fields, "PatchType")? {
        None | Some("merge") => PatchType::Merge,
        Some("json") => PatchType::Json,
        Some("strategic") => PatchType::Strategic,
        Some("apply") => PatchType::Apply,
        Some(other) => {
            return Err(TaskError::invalid_input(
                "PatchType",
                format!("{other:?} is not one of merge, json, strategic, apply"),
            ))
        }
    };
    Ok(CallInput {
        cluster: cluster_ref(fields)?,
        method,
        path: path.to_owned(),
        query,
        body,
        patch_type,
        task_token: task_token(fields)?,
    })
}

/// The task token when the payload carries a usable one: with it even an invalid
/// payload is answered on the token rather than left to time out.
#[must_use]
pub fn callback_token(payload: &Value) -> Option<String> {
    payload
        .get("TaskToken")
        .and_then(Value::as_str)
        .filter(|t| is_task_token(t))
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_execution_arn_is_one() {
        let arn = |a: &str| {
            execution_arn(
                json!({ "ExecutionArn": a })
                    .as_object()
                    .unwrap_or(&Fields::new()),
            )
        };
        assert_eq!(
            arn("arn:aws:states:us-east-1:123456789012:execution:m:e"),
            Ok(Some(
                "arn:aws:states:us-east-1:123456789012:execution:m:e".into()
            ))
        );
        for bad in [
            "arn:aws:states:us-east-1:123456789012:stateMachine:m:e",
            "arn:aws:states:us-east-1:123456789012:execution:m",
            "aws:states:us-east-1:123456789012:execution:m:e:x",
        ] {
            assert!(arn(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_payload_that_is_no_object_is_named_by_what_it_is() {
        for (v, what) in [
            (json!(null), "got null"),
            (json!(true), "got a boolean"),
            (json!(1), "got a number"),
            (json!("x"), "got a string"),
            (json!([1]), "got an array"),
        ] {
            let e = parse_call(&v).err();
            assert!(e.is_some_and(|e| e.cause.to_string().contains(what)), "{v}");
        }
    }

    #[test]
    fn an_endpoint_is_an_https_origin() {
        assert!(endpoint_url("https://abc.gr7.us-east-1.eks.amazonaws.com").is_ok());
        assert!(endpoint_url("https://10.0.0.1:8443").is_ok());
        for bad in [
            "http://h",
            "https://h/api",
            "https://h?x=1",
            "https://h#f",
            "https://u@h",
            "https://:p@h",
            "https://u:p@h",
        ] {
            assert!(endpoint_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_certificate_authority_may_be_wrapped_base64_or_pem() {
        let pem = crate::contract::certificates::TEST_CA;
        let b64 = base64::engine::general_purpose::STANDARD.encode(pem);
        let wrapped: String = b64
            .as_bytes()
            .chunks(64)
            .map(|c| format!("{}\n", String::from_utf8_lossy(c)))
            .collect();
        for given in [pem.to_owned(), b64, wrapped] {
            assert_eq!(certificate_pem(&given).as_deref(), Ok(pem), "{given:?}");
        }
    }

    #[test]
    fn a_since_time_is_an_rfc_3339_time() {
        let since = |v: &str| check_log_parameters(&[("sinceTime".into(), v.into())]);
        assert_eq!(since("2026-12-06T10:00:00Z"), Ok(()));
        assert!(since("yesterday").is_err());
    }

    #[test]
    fn log_parameters_at_their_edges() {
        let check = |p: &[(&str, &str)]| {
            check_log_parameters(
                &p.iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect::<Vec<_>>(),
            )
        };
        assert_eq!(check(&[("tailLines", "0")]), Ok(()));
        assert!(check(&[("tailLines", "-1")]).is_err());
        assert_eq!(check(&[("limitBytes", "1")]), Ok(()));
        assert!(check(&[("limitBytes", "0")]).is_err());
        assert_eq!(
            check(&[("container", "a"), ("container", "b"), ("tailLines", "1")]),
            Ok(())
        );
        assert!(check(&[("tailLines", "1"), ("tailLines", "2")]).is_err());
    }

    #[test]
    fn nesting_counts_arrays_and_objects() {
        assert_eq!(nesting(&json!(1)), 0);
        assert_eq!(nesting(&json!([[[1]]])), 3);
        assert_eq!(nesting(&json!({ "a": [{ "b": [1] }] })), 4);
    }

    fn sized_job(pad: usize) -> Value {
        json!({ "apiVersion": "batch/v1", "kind": "Job", "metadata": { "name": "j", "annotations": { "pad": "x".repeat(pad) } },
            "spec": { "template": { "spec": { "restartPolicy": "Never", "containers": [{ "name": "c", "image": "busybox" }] } } } })
    }

    fn run_job(job: Value) -> Result<RunJobInput, TaskError> {
        parse_run_job(&json!({ "ClusterName": "c", "Namespace": "n", "Job": job }))
    }

    #[test]
    fn a_job_manifest_may_be_up_to_a_mebibyte() {
        assert!(
            run_job(sized_job(1_000_000)).is_ok(),
            "a million bytes are under a mebibyte"
        );
        let overhead = crate::contract::budget::serialized_len(&sized_job(0));
        let exact = sized_job(MAX_JOB_BYTES - overhead);
        assert_eq!(
            crate::contract::budget::serialized_len(&exact),
            MAX_JOB_BYTES
        );
        assert!(run_job(exact).is_ok());
        let over = run_job(sized_job(MAX_JOB_BYTES - overhead + 1)).err();
        assert!(over.is_some_and(|e| e.cause.to_string().contains("at most")));
    }

    #[test]
    fn a_job_manifest_may_nest_64_levels() {
        // The Job, its metadata, then k objects: 2 + k levels.
        let nested = |k: usize| {
            let mut job = sized_job(0);
            job["metadata"]["nest"] = (1..k).fold(json!({ "x": 1 }), |v, _| json!({ "x": v }));
            job
        };
        assert_eq!(nesting(&nested(62)), MAX_JOB_DEPTH);
        assert!(
            run_job(nested(62)).is_ok(),
            "{:?}",
            run_job(nested(62)).err()
        );
        assert!(run_job(nested(63)).is_err_and(|e| e.cause.to_string().contains("levels deep")));
    }

    #[test]
    fn wait_for_completion_follows_the_token() {
        let wait = |v: Value| wait_for_completion(v.as_object().unwrap_or(&Fields::new()));
        assert_eq!(wait(json!({ "TaskToken": "t" })), Ok(true));
        assert_eq!(wait(json!({ "TaskToken": null })), Ok(false));
        assert_eq!(wait(json!({})), Ok(false));
        assert_eq!(
            wait(json!({ "TaskToken": "t", "WaitForCompletion": false })),
            Ok(false)
        );
        assert_eq!(
            wait(json!({ "TaskToken": "t", "WaitForCompletion": true })),
            Ok(true)
        );
        assert!(wait(json!({ "WaitForCompletion": true })).is_err());
        assert_eq!(wait(json!({ "WaitForCompletion": false })), Ok(false));
    }

    #[test]
    fn a_call_path_is_plain_and_answers_once() {
        let call =
            |path: &str| parse_call(&json!({ "ClusterName": "c", "Method": "GET", "Path": path }));
        assert!(call("/api/v1/namespaces/n/pods").is_ok());
        for bad in [
            "/api/v1/watch/pods",
            "/apis/batch/v1/watch/jobs",
            "/api/v1/pods with space",
            "/api/v1/pods\u{1}",
            "/api/v1/pods?watch=1",
        ] {
            assert!(call(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_poll_curve_is_a_non_empty_list_of_seconds() {
        let curve = |c: Value| {
            parse_run_job(
                &json!({ "ClusterName": "c", "Namespace": "n", "Job": sized_job(0), "PollCurveSeconds": c }),
            )
        };
        assert_eq!(
            curve(json!([30, 60])).map(|i| i.poll_curve_seconds),
            Ok(Some(vec![30, 60]))
        );
        for bad in [json!([]), json!(["a"]), json!(30)] {
            assert!(curve(bad.clone()).is_err(), "{bad}");
        }
    }

    #[test]
    fn small_field_rules_at_their_edges() {
        let fields = |v: Value| v.as_object().cloned().unwrap_or_default();
        assert!(req_string(&fields(json!({ "X": "  " })), "X").is_err());
        assert_eq!(req_string(&fields(json!({ "X": " a " })), "X"), Ok(" a "));
        for (v, b) in [("TRUE", true), ("False", false), ("true", true)] {
            assert_eq!(opt_bool(&fields(json!({ "B": v })), "B", ""), Ok(b), "{v}");
        }
        assert!(opt_bool(&fields(json!({ "B": "yes" })), "B", "").is_err());
        assert_eq!(eks_name("Name", &"c".repeat(100), 100), Ok(()));
        assert!(eks_name("Name", &"c".repeat(101), 100).is_err());
    }

    #[test]
    fn a_call_sends_the_method_and_patch_type_it_was_given() {
        for m in ["GET", "POST", "PUT", "DELETE", "HEAD", "PATCH"] {
            let call = parse_call(
                &json!({ "ClusterName": "c", "Method": m.to_lowercase(), "Path": "/api" }),
            );
            assert_eq!(call.map(|c| c.method.as_str()), Ok(m));
        }
        // Kubernetes' content types for its patch strategies.
        for (given, content_type) in [
            (None, "application/merge-patch+json"),
            (Some("merge"), "application/merge-patch+json"),
            (Some("json"), "application/json-patch+json"),
            (Some("strategic"), "application/strategic-merge-patch+json"),
            (Some("apply"), "application/apply-patch+yaml"),
        ] {
            let mut payload =
                json!({ "ClusterName": "c", "Method": "PATCH", "Path": "/api", "RequestBody": {} });
            if let Some(t) = given {
                payload["PatchType"] = json!(t);
            }
            assert_eq!(
                parse_call(&payload).map(|c| c.patch_type.content_type()),
                Ok(content_type),
                "{given:?}"
            );
        }
    }

    #[test]
    fn one_rule_for_iam_arns_and_task_tokens() {
        assert!(is_iam_arn("arn:aws:iam::123456789012:role/r", &["role"]));
        assert!(is_iam_arn(
            "arn:aws-cn:iam::123456789012:role/a/b",
            &["role"]
        ));
        assert!(is_iam_arn(
            "arn:aws:iam::123456789012:user/u",
            &["role", "user"]
        ));
        assert!(!is_iam_arn("arn:aws:iam::123456789012:user/u", &["role"]));
        assert!(!is_iam_arn("arn:aws:iam::123456789012:role/", &["role"]));
        assert!(!is_iam_arn(
            "arn:aws:sts::123456789012:assumed-role/r/s",
            &["role"]
        ));
        assert!(!is_iam_arn("arn:aws:iam::123456789012:roles/r", &["role"]));
        assert!(!is_iam_arn("role/r", &["role"]));
        assert_eq!(
            role_arn("NodeRole", "x").map_err(|e| e.cause["field"].clone()),
            Err(Value::from("NodeRole"))
        );
        assert!(is_task_token(&"t".repeat(MAX_TASK_TOKEN_CHARS)));
        assert!(!is_task_token(&"t".repeat(MAX_TASK_TOKEN_CHARS + 1)));
        assert!(!is_task_token(""));
    }

    /// A cluster in another region, named by its endpoint alone, is described there.
    #[test]
    fn an_eks_endpoint_names_its_region() {
        let region =
            |u: &str| eks_endpoint_region(&Url::parse(u).unwrap_or_else(|e| panic!("{e}")));
        assert_eq!(
            region("https://ABC123.gr7.eu-west-1.eks.amazonaws.com"),
            Some("eu-west-1".into())
        );
        assert_eq!(
            region("https://abc.yl4.cn-north-1.eks.amazonaws.com.cn"),
            Some("cn-north-1".into())
        );
        assert_eq!(
            region("https://abc.sk1.us-gov-west-1.eks.amazonaws.com"),
            Some("us-gov-west-1".into())
        );
        assert_eq!(region("https://127.0.0.1:6443"), None);
        assert_eq!(region("https://eks.amazonaws.com.attacker.example"), None);
        assert_eq!(
            region("https://x.gr7.eu-west-1.eks.amazonaws.com.attacker.example"),
            None
        );
        assert_eq!(region("https://x.gr7.us-a_b-1.eks.amazonaws.com"), None);
        assert_eq!(region("https://eu-west-1.eks.amazonaws.com"), None);
        let fields = |v: Value| v.as_object().cloned().unwrap_or_default();
        let named = cluster_ref(&fields(serde_json::json!({ "ClusterName": "c", "Endpoint": "https://abc.gr7.ap-south-1.eks.amazonaws.com" })))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(named.region.as_deref(), Some("ap-south-1"));
        let given = cluster_ref(&fields(serde_json::json!({ "ClusterName": "c", "Region": "us-west-2", "Endpoint": "https://abc.gr7.ap-south-1.eks.amazonaws.com" })))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(given.region.as_deref(), Some("us-west-2"), "Region wins");
    }

    /// Names that go into request paths are names, never paths.
    #[test]
    fn names_are_never_paths() {
        for name in ["job", "a.b-c", "x1"] {
            assert!(is_dns_subdomain(name), "{name}");
        }
        for name in [".", "..", "a/b", "a..b", "-a", "A", "a%2Fb", "", ".a", "a."] {
            assert!(!is_dns_subdomain(name), "{name}");
        }
        assert!(eks_name("NodegroupName", "ng_1-a", 63).is_ok());
        for name in [
            "x/../../victim",
            ".",
            "..",
            "a%2Fb",
            "_a",
            "",
            &"n".repeat(64),
        ] {
            let e = eks_name("NodegroupName", name, 63)
                .err()
                .map(|e| e.cause["field"].clone());
            assert_eq!(e, Some(Value::from("NodegroupName")), "{name}");
        }
    }

    /// A Job without `apiVersion` and `kind` is taken as the API server takes it (from
    /// the path: batch/v1 Job); a wrong one is refused by name.
    #[test]
    fn a_job_without_api_version_or_kind_is_a_batch_v1_job() {
        let job = |extra: Value| {
            let mut j = serde_json::json!({ "metadata": { "name": "n" }, "spec": { "template": { "spec": { "containers": [{ "name": "c", "image": "i" }], "restartPolicy": "Never" } } } });
            for (k, v) in extra.as_object().cloned().unwrap_or_default() {
                j[k] = v;
            }
            job_manifest(Some(&j))
        };
        let filled = job(serde_json::json!({})).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(filled["apiVersion"], "batch/v1");
        assert_eq!(filled["kind"], "Job");
        for (extra, field) in [
            (
                serde_json::json!({ "apiVersion": "batch/v2" }),
                "Job.apiVersion",
            ),
            (serde_json::json!({ "kind": "Pod" }), "Job.kind"),
        ] {
            let e = job(extra).err().map(|e| e.cause["field"].clone());
            assert_eq!(e, Some(Value::from(field)));
        }
    }

    #[test]
    fn log_parameters_follow_the_read_log_api_but_never_skip_tls() {
        let with =
            |params: Value| log_options(Some(&serde_json::json!({ "LogParameters": params })));
        let ok = with(serde_json::json!({ "stream": ["Stderr"], "pretty": ["true"] }));
        assert!(ok.is_ok(), "{ok:?}");
        for (params, field) in [
            (
                serde_json::json!({ "stream": ["stderr"] }),
                "LogOptions.LogParameters.stream",
            ),
            (
                serde_json::json!({ "insecureSkipTLSVerifyBackend": ["true"] }),
                "LogOptions.LogParameters.insecureSkipTLSVerifyBackend",
            ),
            (
                serde_json::json!({ "follow": ["true"] }),
                "LogOptions.LogParameters.follow",
            ),
        ] {
            let e = with(params).map_err(|e| e.cause["field"].clone());
            assert_eq!(e.err(), Some(Value::from(field)));
        }
    }
}
