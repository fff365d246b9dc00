//! The one recipe that moves a native EKS state onto the worker: every native resource
//! ([`TABLE`]) becomes `lambda:invoke.waitForTaskToken` on the function that serves it,
//! with the state's `Parameters` as the `Payload` plus `TaskToken` (and `Operation` for
//! a cluster operation, `WaitForCompletion: false` where the native resource has no
//! `.sync`). The state's output, error names and causes are then the native ones, so
//! `ResultSelector`, `ResultPath`, `Choice`, `Catch` and `Retry` downstream are left as
//! they are. The recipe adds one retrier first, for the errors of the Lambda invoke
//! itself ([`lambda_retry`], as AWS recommends on every `lambda:invoke` task), and moves
//! a state's `Credentials.RoleArn` (a cluster in another account) into the payload's
//! `RoleArn`, which the worker assumes. [`migrate`] applies it to a whole definition,
//! in `Parallel` branches and `Map` item processors too; the CLI's `migrate` prints it.

use serde_json::{json, Map, Value};

/// The function that serves a native resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Function {
    /// `run-job`.
    RunJob,
    /// `call`.
    Call,
    /// `cluster-ops`.
    ClusterOps,
}

/// One row of the migration table: a native resource and what it becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Row {
    /// The native resource after `arn:<partition>:states:::` (`eks:runJob.sync`).
    pub native: &'static str,
    /// The function that serves it.
    pub function: Function,
    /// `Operation` for the cluster-ops function.
    pub operation: Option<&'static str>,
    /// Whether the native state waits for the end (`.sync`, and `eks:call`, which ends
    /// with its response): without it the payload says `WaitForCompletion: false`.
    pub waits: bool,
}

const fn row(
    native: &'static str,
    function: Function,
    operation: Option<&'static str>,
    waits: bool,
) -> Row {
    Row {
        native,
        function,
        operation,
        waits,
    }
}

/// Every native EKS resource of Step Functions, and its replacement.
pub const TABLE: [Row; 15] = [
    row("eks:runJob", Function::RunJob, None, false),
    row("eks:runJob.sync", Function::RunJob, None, true),
    row("eks:call", Function::Call, None, true),
    row(
        "eks:createCluster",
        Function::ClusterOps,
        Some("createCluster"),
        false,
    ),
    row(
        "eks:createCluster.sync",
        Function::ClusterOps,
        Some("createCluster"),
        true,
    ),
    row(
        "eks:deleteCluster",
        Function::ClusterOps,
        Some("deleteCluster"),
        false,
    ),
    row(
        "eks:deleteCluster.sync",
        Function::ClusterOps,
        Some("deleteCluster"),
        true,
    ),
    row(
        "eks:createNodegroup",
        Function::ClusterOps,
        Some("createNodegroup"),
        false,
    ),
    row(
        "eks:createNodegroup.sync",
        Function::ClusterOps,
        Some("createNodegroup"),
        true,
    ),
    row(
        "eks:deleteNodegroup",
        Function::ClusterOps,
        Some("deleteNodegroup"),
        false,
    ),
    row(
        "eks:deleteNodegroup.sync",
        Function::ClusterOps,
        Some("deleteNodegroup"),
        true,
    ),
    row(
        "eks:createFargateProfile",
        Function::ClusterOps,
        Some("createFargateProfile"),
        false,
    ),
    row(
        "eks:createFargateProfile.sync",
        Function::ClusterOps,
        Some("createFargateProfile"),
        true,
    ),
    row(
        "eks:deleteFargateProfile",
        Function::ClusterOps,
        Some("deleteFargateProfile"),
        false,
    ),
    row(
        "eks:deleteFargateProfile.sync",
        Function::ClusterOps,
        Some("deleteFargateProfile"),
        true,
    ),
];

/// The errors of the Lambda invoke itself that AWS recommends retrying on every
/// `lambda:invoke` task (a throttle included: the invocation did not happen).
pub const LAMBDA_ERRORS: [&str; 5] = [
    "Lambda.ClientExecutionTimeoutException",
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
];

/// The retrier the recipe puts first on a migrated state (AWS's recommendation: 2 s,
/// 6 attempts, doubling).
#[must_use]
pub fn lambda_retry() -> Value {
    json!({ "ErrorEquals": LAMBDA_ERRORS, "IntervalSeconds": 2, "MaxAttempts": 6, "BackoffRate": 2 })
}

/// The function names (or ARNs) a migrated state invokes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Functions {
    /// The run-job function.
    pub run_job: String,
    /// The call function.
    pub call: String,
    /// The cluster-ops function.
    pub cluster_ops: String,
}

impl Functions {
    fn of(&self, f: Function) -> &str {
        match f {
            Function::RunJob => &self.run_job,
            Function::Call => &self.call,
            Function::ClusterOps => &self.cluster_ops,
        }
    }
}

/// The row and partition of a native resource ARN (`arn:aws:states:::eks:call`).
#[must_use]
pub fn native_row(resource: &str) -> Option<(&'static Row, &str)> {
    let rest = resource.strip_prefix("arn:")?;
    let (partition, rest) = rest.split_once(':')?;
    let native = rest.strip_prefix("states:::")?;
    TABLE
        .iter()
        .find(|r| r.native == native)
        .map(|r| (r, partition))
}

/// Why a definition could not be migrated: the state's path and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{state}: {message}")]
pub struct MigrationError {
    /// Where, as `States.<name>` (nested: `States.<name>.Branches[0].States.<name>`).
    pub state: String,
    /// What is wrong.
    pub message: String,
}

/// Migrates every native EKS state of a definition; the rest is left as it is. Says
/// how many states it moved.
///
/// # Errors
/// [`MigrationError`] for a definition that is not an object of `States`, or a native
/// state whose `Parameters` (or `Arguments`) is not an object, or that already names a
/// field the recipe adds.
pub fn migrate(
    definition: &Value,
    functions: &Functions,
) -> Result<(Value, usize), MigrationError> {
    let mut out = definition.clone();
    let mut moved = 0;
    for at in states(definition)? {
        let Some(state) = out.pointer_mut(&at.pointer) else {
            continue;
        };
        if migrate_state(state, functions, &at.language).map_err(|message| MigrationError {
            state: at.path.clone(),
            message,
        })? {
            moved += 1;
        }
    }
    Ok((out, moved))
}

/// Where a state sits in a definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateAt {
    /// As `States.<name>` (nested: `States.<name>.Branches[0].States.<name>`).
    pub path: String,
    /// Its JSON pointer in the definition.
    pub pointer: String,
    /// Its query language: its own `QueryLanguage`, else its machine's (`JSONPath`).
    pub language: String,
}

/// Every state of a definition, in `Parallel` branches and `Map` item processors too,
/// each after the states nested in it.
///
/// # Errors
/// [`MigrationError`] for a definition, branch or item processor without a `States`
/// object.
pub fn states(definition: &Value) -> Result<Vec<StateAt>, MigrationError> {
    let mut found = Vec::new();
    let language = query_language(definition, "JSONPath");
    collect_states(definition, "", "", &language, &mut found)?;
    Ok(found)
}

fn query_language(node: &Value, inherited: &str) -> String {
    node.get("QueryLanguage")
        .and_then(Value::as_str)
        .unwrap_or(inherited)
        .to_owned()
}

fn collect_states(
    machine: &Value,
    at: &str,
    pointer: &str,
    language: &str,
    found: &mut Vec<StateAt>,
) -> Result<(), MigrationError> {
    let states = machine
        .get("States")
        .and_then(Value::as_object)
        .ok_or_else(|| MigrationError {
            state: at.trim_end_matches('.').to_owned(),
            message: "has no States object".into(),
        })?;
    for (name, state) in states {
        let path = format!("{at}States.{name}");
        let here = format!(
            "{pointer}/States/{}",
            name.replace('~', "~0").replace('/', "~1")
        );
        let state_language = query_language(state, language);
        if let Some(branches) = state.get("Branches").and_then(Value::as_array) {
            for (i, branch) in branches.iter().enumerate() {
                let (at, pointer) = (
                    format!("{path}.Branches[{i}]."),
                    format!("{here}/Branches/{i}"),
                );
                collect_states(branch, &at, &pointer, &state_language, found)?;
            }
        }
        for key in ["ItemProcessor", "Iterator"] {
            if let Some(inner) = state.get(key) {
                let (at, pointer) = (format!("{path}.{key}."), format!("{here}/{key}"));
                collect_states(inner, &at, &pointer, &state_language, found)?;
            }
        }
        found.push(StateAt {
            path,
            pointer: here,
            language: state_language,
        });
    }
    Ok(())
}

/// Migrates one state in place when its `Resource` is a native EKS resource; says
/// whether it did.
///
/// # Errors
/// What is wrong with the state, for [`MigrationError`].
pub fn migrate_state(
    state: &mut Value,
    functions: &Functions,
    language: &str,
) -> Result<bool, String> {
    let Some((row, partition)) = state
        .get("Resource")
        .and_then(Value::as_str)
        .and_then(native_row)
        .map(|(row, partition)| (row, partition.to_owned()))
    else {
        return Ok(false);
    };
    let jsonata = language == "JSONata";
    let (arguments, token) = if jsonata {
        (
            "Arguments",
            ("TaskToken", "{% $states.context.Task.Token %}"),
        )
    } else {
        ("Parameters", ("TaskToken.$", "$$.Task.Token"))
    };
    let Some(fields) = state.as_object_mut() else {
        return Ok(false);
    };
    let mut payload: Map<String, Value> = match fields.get(arguments) {
        // Natively the state's whole input is then the request: say so rather than
        // send a payload without it.
        None => {
            return Err(format!(
                "has no {arguments} (natively its whole input is the request): write the request as {arguments} first"
            ))
        }
        Some(Value::Object(p)) => p.clone(),
        Some(_) => return Err(format!("its {arguments} must be an object to migrate")),
    };
    if fields.get("Retry").is_some_and(|r| !r.is_array()) {
        return Err("its Retry must be a list to migrate".into());
    }
    let mut own = vec![(token.0, json!(token.1))];
    if let Some(op) = row.operation {
        own.push(("Operation", json!(op)));
    }
    if !row.waits {
        own.push(("WaitForCompletion", json!(false)));
    }
    if let Some(credentials) = fields.remove("Credentials") {
        let role = credentials
            .as_object()
            .and_then(|c| c.iter().find(|(k, _)| k.starts_with("RoleArn")))
            .ok_or_else(|| "its Credentials name no RoleArn".to_owned())?;
        let key: &'static str = if role.0 == "RoleArn.$" {
            "RoleArn.$"
        } else {
            "RoleArn"
        };
        if row.function == Function::ClusterOps {
            return Err(
                "Credentials on a cluster operation: the cluster-ops function acts with its own role only"
                    .into(),
            );
        }
        own.push((key, role.1.clone()));
    }
    for (key, value) in own {
        let bare = key.trim_end_matches(".$");
        if payload.contains_key(bare) || payload.contains_key(&format!("{bare}.$")) {
            return Err(format!(
                "its {arguments} already name {bare}, which the recipe adds"
            ));
        }
        payload.insert(key.to_owned(), value);
    }
    fields.insert(
        "Resource".into(),
        json!(format!(
            "arn:{partition}:states:::lambda:invoke.waitForTaskToken"
        )),
    );
    fields.insert(
        arguments.into(),
        json!({ "FunctionName": functions.of(row.function), "Payload": payload }),
    );
    let mut retry = vec![lambda_retry()];
    if let Some(Value::Array(theirs)) = fields.remove("Retry") {
        retry.extend(theirs);
    }
    fields.insert("Retry".into(), Value::Array(retry));
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn functions() -> Functions {
        Functions {
            run_job: "rj".into(),
            call: "c".into(),
            cluster_ops: "co".into(),
        }
    }

    fn native(resource: &str, parameters: Value) -> Value {
        json!({ "Type": "Task", "Resource": format!("arn:aws:states:::{resource}"), "Parameters": parameters,
                "ResultSelector": { "e.$": "$.Cluster.Endpoint" }, "ResultPath": "$.r",
                "Catch": [{ "ErrorEquals": ["EKS.404"], "Next": "N" }], "Retry": [{ "ErrorEquals": ["States.ALL"] }],
                "HeartbeatSeconds": 600, "Next": "M" })
    }

    /// Every row of the table, migrated: the function, the payload (the parameters plus
    /// exactly what the row adds), and every downstream field untouched.
    #[test]
    fn every_native_resource_has_one_replacement() {
        for row in &TABLE {
            let mut state = native(row.native, json!({ "ClusterName": "c", "Name": "n" }));
            let moved = migrate_state(&mut state, &functions(), "JSONPath");
            assert_eq!(moved, Ok(true), "{}", row.native);
            assert_eq!(
                state["Resource"],
                "arn:aws:states:::lambda:invoke.waitForTaskToken"
            );
            let function = match row.function {
                Function::RunJob => "rj",
                Function::Call => "c",
                Function::ClusterOps => "co",
            };
            assert_eq!(
                state["Parameters"]["FunctionName"], function,
                "{}",
                row.native
            );
            let payload = &state["Parameters"]["Payload"];
            let mut expected =
                json!({ "ClusterName": "c", "Name": "n", "TaskToken.$": "$$.Task.Token" });
            if let Some(op) = row.operation {
                expected["Operation"] = json!(op);
            }
            if !row.native.ends_with(".sync") && row.native != "eks:call" {
                expected["WaitForCompletion"] = json!(false);
            }
            assert_eq!(payload, &expected, "{}", row.native);
            for kept in [
                "ResultSelector",
                "ResultPath",
                "Catch",
                "HeartbeatSeconds",
                "Next",
            ] {
                assert_eq!(
                    state[kept],
                    native(row.native, json!({}))[kept],
                    "{}: {kept}",
                    row.native
                );
            }
            assert_eq!(
                state["Retry"],
                json!([
                    // AWS's recommended retrier for a Lambda task, spelled out.
                    {
                        "ErrorEquals": [
                            "Lambda.ClientExecutionTimeoutException",
                            "Lambda.ServiceException",
                            "Lambda.AWSLambdaException",
                            "Lambda.SdkClientException",
                            "Lambda.TooManyRequestsException"
                        ],
                        "IntervalSeconds": 2,
                        "MaxAttempts": 6,
                        "BackoffRate": 2
                    },
                    { "ErrorEquals": ["States.ALL"] }
                ]),
                "the Lambda retrier first, theirs after"
            );
        }
        assert_eq!(
            TABLE
                .iter()
                .map(|r| r.native)
                .collect::<std::collections::HashSet<_>>()
                .len(),
            TABLE.len()
        );
    }

    #[test]
    fn a_whole_definition_nested_states_and_other_partitions() {
        let definition = json!({ "StartAt": "P", "States": {
            "P": { "Type": "Parallel", "Branches": [{ "StartAt": "R", "States": {
                "R": { "Type": "Task", "Resource": "arn:aws-cn:states:::eks:runJob.sync", "Parameters": { "ClusterName": "c" }, "End": true } } }],
                "Next": "M" },
            "M": { "Type": "Map", "ItemProcessor": { "StartAt": "C", "States": {
                "C": { "Type": "Task", "Resource": "arn:aws:states:::eks:call", "Parameters": { "ClusterName": "c" }, "End": true } } },
                "Next": "L" },
            "L": { "Type": "Task", "Resource": "arn:aws:states:::lambda:invoke", "Parameters": { "FunctionName": "x" }, "End": true } } });
        let (out, moved) = migrate(&definition, &functions()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(moved, 2);
        let r = &out["States"]["P"]["Branches"][0]["States"]["R"];
        assert_eq!(
            r["Resource"],
            "arn:aws-cn:states:::lambda:invoke.waitForTaskToken"
        );
        assert_eq!(
            out["States"]["M"]["ItemProcessor"]["States"]["C"]["Parameters"]["FunctionName"],
            "c"
        );
        assert_eq!(
            out["States"]["L"], definition["States"]["L"],
            "other states are left alone"
        );
    }

    #[test]
    fn a_state_speaks_its_own_query_language_else_its_machines() {
        let languages = |d: Value| {
            states(&d)
                .unwrap_or_else(|e| panic!("{e:?}"))
                .into_iter()
                .map(|s| (s.path, s.language))
                .collect::<Vec<_>>()
        };
        let pass = json!({ "Type": "Pass", "End": true });
        let own = json!({ "Type": "Pass", "QueryLanguage": "JSONPath", "End": true });
        assert_eq!(
            languages(json!({ "QueryLanguage": "JSONata", "States": { "A": pass, "B": own } })),
            [
                ("States.A".to_owned(), "JSONata".to_owned()),
                ("States.B".to_owned(), "JSONPath".to_owned())
            ]
        );
        assert_eq!(
            languages(json!({ "States": { "A": pass } })),
            [("States.A".to_owned(), "JSONPath".to_owned())]
        );
    }

    #[test]
    fn jsonata_states_and_credentials() {
        let mut state = json!({ "Type": "Task", "QueryLanguage": "JSONata", "Resource": "arn:aws:states:::eks:call",
            "Arguments": { "ClusterName": "c", "Method": "GET", "Path": "/api" }, "End": true });
        assert_eq!(migrate_state(&mut state, &functions(), "JSONata"), Ok(true));
        assert_eq!(
            state["Arguments"]["Payload"]["TaskToken"],
            "{% $states.context.Task.Token %}"
        );
        assert!(state.get("Parameters").is_none());
        let mut elsewhere = native("eks:runJob.sync", json!({ "ClusterName": "c" }));
        elsewhere["Credentials"] = json!({ "RoleArn.$": "$.role" });
        assert_eq!(
            migrate_state(&mut elsewhere, &functions(), "JSONPath"),
            Ok(true)
        );
        assert_eq!(elsewhere["Parameters"]["Payload"]["RoleArn.$"], "$.role");
        assert!(elsewhere.get("Credentials").is_none());
    }

    #[test]
    fn what_cannot_be_migrated_is_named() {
        let mut taken = native(
            "eks:runJob.sync",
            json!({ "ClusterName": "c", "TaskToken.$": "$.t" }),
        );
        assert!(migrate_state(&mut taken, &functions(), "JSONPath")
            .is_err_and(|m| m.contains("TaskToken")));
        let mut op = native("eks:createCluster", json!({ "Operation": "x" }));
        assert!(migrate_state(&mut op, &functions(), "JSONPath")
            .is_err_and(|m| m.contains("Operation")));
        let mut cross = native("eks:deleteCluster.sync", json!({ "Name": "c" }));
        cross["Credentials"] = json!({ "RoleArn": "arn:aws:iam::1:role/r" });
        assert!(migrate_state(&mut cross, &functions(), "JSONPath")
            .is_err_and(|m| m.contains("Credentials")));
        let e = migrate(
            &json!({ "States": { "S": { "Type": "Task", "Resource": "arn:aws:states:::eks:call", "Parameters": "x" } } }),
            &functions(),
        );
        assert_eq!(e.err().map(|e| e.state), Some("States.S".to_owned()));
        assert!(migrate(&json!({ "StartAt": "x" }), &functions()).is_err());
        let mut unknown = native("eks:runJobs.sync", json!({}));
        assert_eq!(
            migrate_state(&mut unknown, &functions(), "JSONPath"),
            Ok(false)
        );
        let mut bare =
            json!({ "Type": "Task", "Resource": "arn:aws:states:::eks:runJob.sync", "End": true });
        assert!(migrate_state(&mut bare, &functions(), "JSONPath")
            .is_err_and(|m| m.contains("has no Parameters")));
        let mut odd = native("eks:call", json!({}));
        odd["Retry"] = json!({ "ErrorEquals": ["States.ALL"] });
        assert!(
            migrate_state(&mut odd, &functions(), "JSONPath").is_err_and(|m| m.contains("Retry"))
        );
    }
}
