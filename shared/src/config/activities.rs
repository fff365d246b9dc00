//! The activities a deployment polls (`ACTIVITIES`): which function each one runs.

/// The function an activity's tasks go to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Function {
    /// run-job.
    RunJob,
    /// call.
    Call,
}

/// An activity the worker serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Activity {
    /// What its tasks are.
    pub function: Function,
    /// Its ARN.
    pub arn: String,
}

/// Parses `ACTIVITIES`: `run-job=<activity ARN>,call=<activity ARN>,…`.
///
/// # Errors
/// A message naming the malformed entry.
pub fn parse_activities(text: &str) -> Result<Vec<Activity>, String> {
    text.split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(|entry| {
            let (function, arn) = entry
                .split_once('=')
                .ok_or_else(|| format!("{entry:?} is not <function>=<activity ARN>"))?;
            let function = match function.trim() {
                "run-job" => Function::RunJob,
                "call" => Function::Call,
                other => return Err(format!("{other:?} is not run-job or call")),
            };
            let arn = arn.trim();
            if !(arn.starts_with("arn:") && arn.contains(":activity:")) {
                return Err(format!("{arn:?} is not an activity ARN"));
            }
            Ok(Activity {
                function,
                arn: arn.to_owned(),
            })
        })
        .collect()
}
