//! `eks-task-worker`: the worker's command line.
//!
//! - `eks-task-worker token --cluster NAME [--region R] [--role-arn ARN]` prints the
//!   bearer token the worker sends, as an `ExecCredential` like `aws eks get-token`
//!   (so kubectl can use it as an exec credential plugin), in the version kubectl asks
//!   for in `KUBERNETES_EXEC_INFO` (`v1beta1` when it says none).
//! - `eks-task-worker kubeconfig --cluster NAME [--region R] [--role-arn ARN]
//!   [--output FILE]` writes a kubeconfig for the cluster (its endpoint and CA from
//!   `DescribeCluster`) that uses this program's `token` as its exec credential plugin.
//! - `eks-task-worker invoke run-job|call --payload FILE` runs a handler locally with
//!   the same code the Lambda runs, and prints its result (its log lines on stderr).
//! - `eks-task-worker bootstrap --cluster NAME --role-arn ARN [--namespace NS]
//!   [--region R] [--dry-run]` grants the worker's role access to a cluster: an access
//!   entry (or `aws-auth` mapping), the namespace, a least-privilege Role and binding.
//! - `eks-task-worker migrate --run-job-function F --call-function F
//!   --cluster-ops-function F [FILE]` prints a state machine definition (FILE or stdin)
//!   with every native EKS state moved onto the worker by the README's recipe; it
//!   refuses (`HeartbeatTooShort`) a migrated state whose `HeartbeatSeconds` the
//!   worker's heartbeats cannot meet with the settings in the environment.
//! - `eks-task-worker check [--function F]... [FILE]` checks every
//!   `lambda:invoke.waitForTaskToken` state of a definition that invokes a function F
//!   (every one when none is named) the same way; it exits 1 when one fails.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::{bail, Context};
use serde_json::{json, Value};
use worker::adapters::credentials::AwsCredentials;
use worker::adapters::eks_directory::EksDirectory;
use worker::adapters::token::{BearerTokens, CREDENTIALS_MARGIN, RENEW_AFTER, TOKEN_LIFETIME};
use worker::config::Settings;
use worker::ports::clock::{Clock, SystemClock};
use worker::ports::cluster::ClusterDirectory;
use worker::task::deps::Deps;

const USAGE: &str = "usage:
  eks-task-worker token --cluster NAME [--region REGION] [--role-arn ARN]
  eks-task-worker kubeconfig --cluster NAME [--region REGION] [--role-arn ARN] [--output FILE]
  eks-task-worker invoke run-job|call --payload FILE
  eks-task-worker bootstrap --cluster NAME --role-arn ARN [--namespace NS] [--region REGION] [--dry-run]
  eks-task-worker migrate --run-job-function F --call-function F --cluster-ops-function F [FILE]
  eks-task-worker check [--function F]... [FILE]";

fn flag(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
}

/// Prints a line to stdout; a closed pipe (`| head`) is not an error.
fn print_out(text: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stdout(), "{text}");
}

/// The `ExecCredential` version kubectl asks for in `KUBERNETES_EXEC_INFO` (its
/// `apiVersion`, as `aws eks get-token` reads it); `v1beta1` when it says nothing.
fn exec_api_version(info: Option<&str>) -> anyhow::Result<&'static str> {
    const KNOWN: [&str; 3] = [
        "client.authentication.k8s.io/v1",
        "client.authentication.k8s.io/v1beta1",
        "client.authentication.k8s.io/v1alpha1",
    ];
    let Some(info) = info.map(str::trim).filter(|i| !i.is_empty()) else {
        return Ok(KNOWN[1]);
    };
    let asked: Value = serde_json::from_str(info).context("KUBERNETES_EXEC_INFO is not JSON")?;
    let version = asked["apiVersion"].as_str().unwrap_or_default();
    KNOWN
        .iter()
        .find(|k| **k == version)
        .copied()
        .with_context(|| {
            format!(
                "KUBERNETES_EXEC_INFO asks for apiVersion {version:?}; known: {}",
                KNOWN.join(", ")
            )
        })
}

/// `--cluster` (required), the SDK configuration from the environment, and the region
/// (`--region`, else the configuration's).
async fn cluster_args(args: &[String]) -> anyhow::Result<(String, aws_config::SdkConfig, String)> {
    let cluster = flag(args, "--cluster").context("--cluster NAME is required")?;
    let sdk = aws_config::load_from_env().await;
    let region = flag(args, "--region")
        .or_else(|| sdk.region().map(ToString::to_string))
        .context("no region: pass --region or set AWS_REGION")?;
    Ok((cluster, sdk, region))
}

async fn token(args: &[String]) -> anyhow::Result<()> {
    let (cluster, sdk, region) = cluster_args(args).await?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let tokens = BearerTokens::new(Arc::new(AwsCredentials::new(&sdk)?), clock, RENEW_AFTER);
    let t = tokens
        .token(&region, &cluster, flag(args, "--role-arn").as_deref())
        .await?;
    // A minute before the server would refuse it, or before its credentials expire.
    let mut expires = t.signed_at + TOKEN_LIFETIME - Duration::from_secs(60);
    if let Some(credentials_expiry) = t.credentials_expiry {
        expires = expires.min(credentials_expiry - CREDENTIALS_MARGIN);
    }
    let out = json!({
        "kind": "ExecCredential",
        "apiVersion": exec_api_version(std::env::var("KUBERNETES_EXEC_INFO").ok().as_deref())?,
        "spec": {},
        "status": { "expirationTimestamp": format!("{}Z", worker::contract::time::utc_seconds(expires)), "token": t.token },
    });
    print_out(&out.to_string());
    Ok(())
}

/// A kubeconfig for `--cluster` (its endpoint and CA as `DescribeCluster` gives them, as
/// `--role-arn` when given) whose user runs this program's `token` as an exec
/// credential plugin, so kubectl sends the very tokens the worker sends. Written to
/// `--output`, or printed (JSON, which kubeconfig readers take as YAML).
async fn kubeconfig(args: &[String]) -> anyhow::Result<()> {
    use base64::Engine as _;
    let (cluster, sdk, region) = cluster_args(args).await?;
    let role = flag(args, "--role-arn");
    let directory = EksDirectory::new(&sdk, Arc::new(AwsCredentials::new(&sdk)?));
    let access = directory
        .describe(&cluster, Some(&region), role.as_deref())
        .await
        .map_err(|e| anyhow::anyhow!("{}: {}", e.name, e.cause_string()))?;
    let program = std::env::current_exe().context("the path of this program")?;
    let mut token_args = vec!["token", "--cluster", &cluster, "--region", &region];
    if let Some(role) = &role {
        token_args.extend(["--role-arn", role.as_str()]);
    }
    let user = format!("eks-task-worker@{cluster}");
    let config = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{ "name": cluster, "cluster": {
            "server": access.endpoint.as_str().trim_end_matches('/'),
            "certificate-authority-data":
                base64::engine::general_purpose::STANDARD.encode(&access.certificate_authority),
        } }],
        "users": [{ "name": user, "user": { "exec": {
            "apiVersion": "client.authentication.k8s.io/v1beta1",
            "command": program.to_string_lossy(),
            "args": token_args,
            "interactiveMode": "Never",
        } } }],
        "contexts": [{ "name": cluster, "context": { "cluster": cluster, "user": user } }],
        "current-context": cluster,
    });
    let text = serde_json::to_string_pretty(&config)?;
    match flag(args, "--output") {
        Some(path) => {
            std::fs::write(&path, format!("{text}\n"))
                .with_context(|| format!("writing {path}"))?;
            eprintln!("eks-task-worker: wrote {path} (context {cluster})");
        }
        None => print_out(&text),
    }
    Ok(())
}

async fn invoke(args: &[String]) -> anyhow::Result<bool> {
    let function = args.first().map(String::as_str).unwrap_or_default();
    let file = flag(args, "--payload").context("--payload FILE is required")?;
    let text = std::fs::read_to_string(&file).with_context(|| format!("reading {file}"))?;
    let payload: Value =
        serde_json::from_str(&text).with_context(|| format!("{file} is not JSON"))?;
    // The handler's log lines as the function writes them (`AWS_LAMBDA_LOG_FORMAT`,
    // `AWS_LAMBDA_LOG_LEVEL`), on stderr: stdout is the result's.
    lambda_runtime::tracing::init_default_subscriber_with_writer(std::io::stderr);
    let sdk = aws_config::load_from_env().await;
    let deps = Deps::aws(&sdk, Settings::from_env()?)?;
    let deadline = SystemTime::now() + Duration::from_secs(900);
    let result = match function {
        "run-job" => worker::task::run_job::handle(payload, &deps, Some(deadline)).await,
        "call" => worker::task::call::handle(payload, &deps).await,
        other => bail!("unknown function {other:?}: run-job or call\n{USAGE}"),
    };
    match result {
        Ok(v) => {
            print_out(&serde_json::to_string_pretty(&v)?);
            Ok(true)
        }
        Err(e) => {
            println!(
                "{}",
                serde_json::to_string_pretty(&json!({ "errorType": e.name, "cause": e.cause }))?
            );
            Ok(false)
        }
    }
}

async fn bootstrap(args: &[String]) -> anyhow::Result<()> {
    use worker::task::bootstrap::{apply, plan, AuthMode, Grant};
    let cluster = flag(args, "--cluster").context("--cluster NAME is required")?;
    let grant = Grant {
        cluster: cluster.clone(),
        principal_arn: flag(args, "--role-arn")
            .context("--role-arn ARN (the worker's execution role) is required")?,
        namespace: flag(args, "--namespace").unwrap_or_else(|| "default".into()),
    };
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
    if let Some(r) = flag(args, "--region") {
        loader = loader.region(aws_config::Region::new(r));
    }
    let sdk = loader.load().await;
    let eks = aws_sdk_eks::Client::new(&sdk);
    let described = eks
        .describe_cluster()
        .name(&cluster)
        .send()
        .await
        .with_context(|| format!("eks:DescribeCluster {cluster}"))?;
    let mode = AuthMode::from_eks(
        described
            .cluster()
            .and_then(|c| c.access_config())
            .and_then(|a| a.authentication_mode())
            .map(|m| m.as_str()),
    );
    let steps = plan(&grant, mode).map_err(|e| anyhow::anyhow!("{e}"))?;
    if args.iter().any(|a| a == "--dry-run") {
        print_out(&format!("authentication mode {mode:?}; would:"));
        for s in &steps {
            print_out(&format!("  {}", s.describe(&grant)));
        }
        return Ok(());
    }
    let mut settings = Settings::from_env()?;
    if let Some(r) = sdk.region() {
        settings.region = r.to_string();
    }
    let deps = Deps::aws(&sdk, settings)?;
    let cluster_ref = worker::contract::payload::cluster_ref(&serde_json::Map::from_iter([(
        "ClusterName".to_owned(),
        json!(cluster),
    )]))
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let kube = deps
        .connector
        .connect(&cluster_ref)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    for line in apply(&steps, &grant, &eks, kube.as_ref())
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?
    {
        print_out(&line);
    }
    Ok(())
}

/// The state machine definition named by the positional FILE argument, else stdin.
fn read_definition(args: &[String]) -> anyhow::Result<Value> {
    let file = args
        .iter()
        .enumerate()
        .find(|(i, a)| !a.starts_with("--") && (*i == 0 || !args[i - 1].starts_with("--")))
        .map(|(_, a)| a.clone());
    let text = match &file {
        Some(path) => std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?,
        None => std::io::read_to_string(std::io::stdin()).context("reading stdin")?,
    };
    serde_json::from_str(&text).context("the definition is not JSON")
}

/// The states of `definition` that invoke a function `is_worker` names with a
/// `HeartbeatSeconds` the worker's heartbeats (with this environment's settings) cannot
/// be relied on to meet, one line each.
fn short_heartbeats(
    definition: &Value,
    is_worker: impl FnMut(&str) -> bool,
) -> anyhow::Result<Vec<String>> {
    use worker::task::cadence::{short_heartbeats, Cadence};
    let cadence = Cadence::of(&Settings::from_env()?);
    Ok(short_heartbeats(definition, &cadence, is_worker)?
        .into_iter()
        .map(|(state, e)| format!("{state}: {e}"))
        .collect())
}

/// Prints `FILE` (or stdin) migrated; says on stderr how many states moved. Refuses
/// (`HeartbeatTooShort`) a migrated state whose `HeartbeatSeconds` cannot be met.
fn migrate(args: &[String]) -> anyhow::Result<()> {
    use worker::contract::migration::{migrate, Functions};
    let function = |name: &str| {
        flag(args, name).with_context(|| format!("{name} NAME_OR_ARN is required\n{USAGE}"))
    };
    let functions = Functions {
        run_job: function("--run-job-function")?,
        call: function("--call-function")?,
        cluster_ops: function("--cluster-ops-function")?,
    };
    let definition = read_definition(args)?;
    let (migrated, moved) = migrate(&definition, &functions)?;
    let ours = [&functions.run_job, &functions.call, &functions.cluster_ops];
    let short = short_heartbeats(&migrated, |f| ours.iter().any(|o| o.as_str() == f))?;
    if !short.is_empty() {
        bail!("HeartbeatTooShort: nothing printed\n{}", short.join("\n"));
    }
    print_out(&serde_json::to_string_pretty(&migrated)?);
    eprintln!("eks-task-worker: {moved} native EKS state(s) moved onto the worker");
    Ok(())
}

/// `check [--function F]... [FILE]`: every worker task's `HeartbeatSeconds` against
/// the heartbeat cadence of the settings in the environment. `Ok(false)` when one fails.
fn check(args: &[String]) -> anyhow::Result<bool> {
    let named: Vec<String> = args
        .windows(2)
        .filter(|w| w[0] == "--function")
        .map(|w| w[1].clone())
        .collect();
    let definition = read_definition(args)?;
    let mut checked = 0;
    let short = short_heartbeats(&definition, |f| {
        let worker = named.is_empty()
            || named
                .iter()
                .any(|n| f == n || f.ends_with(&format!(":{n}")));
        checked += usize::from(worker);
        worker
    })?;
    for line in &short {
        eprintln!("eks-task-worker: HeartbeatTooShort: {line}");
    }
    eprintln!(
        "eks-task-worker: {checked} worker task(s) with a HeartbeatSeconds checked, {} too short",
        short.len()
    );
    Ok(short.is_empty())
}

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let outcome = match args.first().map(String::as_str) {
        Some("token") => token(&args[1..]).await.map(|()| true),
        Some("kubeconfig") => kubeconfig(&args[1..]).await.map(|()| true),
        Some("invoke") => invoke(&args[1..]).await,
        Some("bootstrap") => bootstrap(&args[1..]).await.map(|()| true),
        Some("migrate") => migrate(&args[1..]).map(|()| true),
        Some("check") => check(&args[1..]),
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("eks-task-worker: {e:#}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::exec_api_version;

    #[test]
    fn the_exec_credential_is_the_version_kubectl_asks_for() {
        assert_eq!(
            exec_api_version(None).ok(),
            Some("client.authentication.k8s.io/v1beta1")
        );
        assert_eq!(
            exec_api_version(Some(
                r#"{"kind":"ExecCredential","apiVersion":"client.authentication.k8s.io/v1","spec":{"interactive":false}}"#
            ))
            .ok(),
            Some("client.authentication.k8s.io/v1")
        );
        assert!(
            exec_api_version(Some(r#"{"apiVersion":"client.authentication.k8s.io/v2"}"#))
                .is_err_and(|e| e.to_string().contains("v2"))
        );
        assert!(exec_api_version(Some("not json")).is_err());
    }

    /// Every task of the shipped examples carries the Lambda retrier, `TimeoutSeconds`
    /// and a `HeartbeatSeconds` the worker's heartbeats meet with the template's default
    /// settings.
    #[test]
    fn the_examples_heartbeats_are_met_with_the_default_settings() {
        use worker::config::Settings;
        use worker::task::cadence::{short_heartbeats, Cadence};
        let cadence =
            Cadence::of(&Settings::from_lookup(|_| None).unwrap_or_else(|e| unreachable!("{e}")));
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../statemachines");
        let mut examples = 0;
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| unreachable!("{e}")) {
            let path = entry.unwrap_or_else(|e| unreachable!("{e}")).path();
            let text = std::fs::read_to_string(&path).unwrap_or_else(|e| unreachable!("{e}"));
            let definition: serde_json::Value =
                serde_json::from_str(&text).unwrap_or_else(|e| unreachable!("{e}"));
            let mut checked = 0;
            let short = short_heartbeats(&definition, &cadence, |_| {
                checked += 1;
                true
            })
            .unwrap_or_else(|e| unreachable!("{e}"));
            assert!(short.is_empty(), "{}: {short:?}", path.display());
            // Every task: the Lambda retrier AWS recommends, a timeout, a heartbeat (so
            // each was checked above).
            let tasks: Vec<&serde_json::Value> = definition["States"]
                .as_object()
                .map(|s| s.values().filter(|t| t["Type"] == "Task").collect())
                .unwrap_or_default();
            for task in &tasks {
                assert!(
                    task["Retry"]
                        .as_array()
                        .is_some_and(|r| r.iter().any(|r| r["ErrorEquals"]
                            .as_array()
                            .is_some_and(|e| e.iter().any(|e| e == "Lambda.ServiceException")))),
                    "{}: a task without the Lambda retrier: {task}",
                    path.display()
                );
                assert!(
                    task["TimeoutSeconds"].is_u64(),
                    "{}: {task}",
                    path.display()
                );
                assert!(
                    task["HeartbeatSeconds"].is_u64(),
                    "{}: {task}",
                    path.display()
                );
            }
            assert_eq!(
                checked,
                tasks.len(),
                "{}: every task checked",
                path.display()
            );
            examples += 1;
        }
        assert!(examples >= 4, "{examples} examples");
    }

    /// The Serverless Application Repository's version in template.yaml is the
    /// workspace's.
    #[test]
    fn the_template_publishes_the_workspace_version() {
        let template = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../template.yaml"),
        )
        .unwrap_or_else(|e| unreachable!("{e}"));
        let published: Vec<&str> = template
            .lines()
            .filter_map(|l| l.trim().strip_prefix("SemanticVersion:"))
            .map(str::trim)
            .collect();
        assert_eq!(published, [env!("CARGO_PKG_VERSION")]);
    }
}
