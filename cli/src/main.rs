//! `eks-task-worker`: the worker's command line, parsed by clap: `--help` on every
//! command, `--version`, an unknown or misspelt flag or a missing value refused by name.
//! Exit codes: 0 done, 1 failed (an error, or `check` finding a heartbeat too short),
//! 2 a usage error. Each command, with its `--help`, is in docs/cli.md (a test holds
//! that page to this program's own help).

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};
use serde_json::{json, Value};
use worker::adapters::credentials::AwsCredentials;
use worker::adapters::eks_directory::EksDirectory;
use worker::adapters::token::{BearerTokens, CREDENTIALS_MARGIN, RENEW_AFTER, TOKEN_LIFETIME};
use worker::config::Settings;
use worker::ports::clock::{Clock, SystemClock};
use worker::ports::cluster::ClusterDirectory;
use worker::task::deps::Deps;

/// The worker's command line (its subcommands below; `--help` on each).
#[derive(Debug, Parser)]
#[command(
    name = "eks-task-worker",
    version,
    about = "eks-task-worker's command line: bearer tokens, kubeconfigs, local handler runs, cluster access, state machine migration",
    propagate_version = true
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Where a cluster is, for `token` and `kubeconfig`.
#[derive(Debug, Args)]
struct ClusterArgs {
    /// The EKS cluster's name.
    #[arg(long, value_name = "NAME")]
    cluster: String,
    /// Its region (default: the AWS configuration's).
    #[arg(long, value_name = "REGION")]
    region: Option<String>,
    /// Act as this role (assumed with the caller's credentials).
    #[arg(long, value_name = "ARN")]
    role_arn: Option<String>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the bearer token the worker sends, as an `ExecCredential` (an exec
    /// credential plugin for kubectl, like `aws eks get-token`).
    ///
    /// The `ExecCredential` is in the version kubectl asks for in
    /// `KUBERNETES_EXEC_INFO` (`v1beta1` when it names none).
    Token(ClusterArgs),
    /// Write a kubeconfig for the cluster that uses `token` as its credential plugin.
    ///
    /// The cluster's endpoint and CA come from `DescribeCluster`.
    Kubeconfig {
        #[command(flatten)]
        cluster: ClusterArgs,
        /// Write it here (default: print it).
        #[arg(long, value_name = "FILE")]
        output: Option<String>,
    },
    /// Run a handler locally with the Lambda's own code; print its result.
    ///
    /// Its log lines go to stderr.
    Invoke {
        /// The function: run-job or call.
        #[arg(value_parser = ["run-job", "call"])]
        function: String,
        /// The payload, a JSON file.
        #[arg(long, value_name = "FILE")]
        payload: String,
    },
    /// Grant the worker's role(s) access to a cluster: an access entry (or `aws-auth`
    /// mapping), the namespace, a least-privilege Role and binding.
    Bootstrap {
        /// The EKS cluster's name.
        #[arg(long, value_name = "NAME")]
        cluster: String,
        /// The worker's execution role(s): repeat it, or give the stack's
        /// `WorkerRoleArns` output, a comma-separated list (split before each `arn:`:
        /// a role name may hold a comma).
        #[arg(
            long = "role-arn",
            value_name = "ARN",
            required_unless_present = "stack",
            conflicts_with = "stack"
        )]
        role_arns: Vec<String>,
        /// The worker's CloudFormation stack: every role of its `WorkerRoleArns`
        /// output (instead of --role-arn).
        #[arg(long, value_name = "STACK")]
        stack: Option<String>,
        /// The namespace the worker runs Jobs in.
        #[arg(long, value_name = "NS", default_value = "default")]
        namespace: String,
        /// The cluster's region (default: the AWS configuration's).
        #[arg(long, value_name = "REGION")]
        region: Option<String>,
        /// Print what it would do, change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Print a state machine definition with every native EKS state moved onto the
    /// worker (the recipe of docs/migration.md).
    ///
    /// It refuses (`HeartbeatTooShort`, nothing printed) a migrated state whose
    /// `HeartbeatSeconds` the worker's heartbeats cannot meet with the settings in the
    /// environment, and a native state whose function was not given.
    Migrate {
        /// The run-job function (name or ARN); needed only when the definition has a
        /// native `eks:runJob` state.
        #[arg(long, value_name = "NAME_OR_ARN")]
        run_job_function: Option<String>,
        /// The call function (name or ARN); needed only when the definition has a
        /// native `eks:call` state.
        #[arg(long, value_name = "NAME_OR_ARN")]
        call_function: Option<String>,
        /// The cluster-ops function (name or ARN); needed only when the definition has a
        /// native cluster operation.
        #[arg(long, value_name = "NAME_OR_ARN")]
        cluster_ops_function: Option<String>,
        /// The definition (default: stdin).
        file: Option<String>,
    },
    /// Check every worker task's `HeartbeatSeconds` against the worker's heartbeats with
    /// the settings in the environment; exit 1 when one is too short.
    Check {
        /// A worker function (name or ARN); repeat it (default: every
        /// `lambda:invoke.waitForTaskToken` state).
        #[arg(long = "function", value_name = "F")]
        functions: Vec<String>,
        /// The definition (default: stdin).
        file: Option<String>,
    },
    /// Print a completion script for a shell (bash, zsh, fish, elvish, powershell):
    /// for example `eks-task-worker completions bash > /etc/bash_completion.d/eks-task-worker`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

/// The completion script of `shell` for this command line.
fn completions(shell: clap_complete::Shell) -> String {
    use clap::CommandFactory;
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "eks-task-worker", &mut out);
    String::from_utf8_lossy(&out).into_owned()
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

/// The SDK configuration from the environment, and the region (`--region`, else the
/// configuration's).
async fn sdk_and_region(args: &ClusterArgs) -> anyhow::Result<(aws_config::SdkConfig, String)> {
    let sdk = aws_config::load_from_env().await;
    let region = args
        .region
        .clone()
        .or_else(|| sdk.region().map(ToString::to_string))
        .context("no region: pass --region or set AWS_REGION")?;
    Ok((sdk, region))
}

async fn token(args: &ClusterArgs) -> anyhow::Result<()> {
    let (sdk, region) = sdk_and_region(args).await?;
    let cluster = &args.cluster;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let tokens = BearerTokens::new(Arc::new(AwsCredentials::new(&sdk)?), clock, RENEW_AFTER);
    let t = tokens
        .token(&region, cluster, args.role_arn.as_deref())
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
async fn kubeconfig(args: &ClusterArgs, output: Option<&str>) -> anyhow::Result<()> {
    use base64::Engine as _;
    let (sdk, region) = sdk_and_region(args).await?;
    let cluster = args.cluster.clone();
    let role = args.role_arn.clone();
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
    match output {
        Some(path) => {
            std::fs::write(path, format!("{text}\n")).with_context(|| format!("writing {path}"))?;
            eprintln!("eks-task-worker: wrote {path} (context {cluster})");
        }
        None => print_out(&text),
    }
    Ok(())
}

async fn invoke(function: &str, file: &str) -> anyhow::Result<bool> {
    let text = std::fs::read_to_string(file).with_context(|| format!("reading {file}"))?;
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
        other => bail!("unknown function {other:?}: run-job or call"),
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

/// A comma-separated list of ARNs, split only before an `arn:` (an IAM name may hold a
/// comma: `role/a,b` is one role).
fn split_arns(list: &str) -> Vec<String> {
    let mut arns: Vec<String> = Vec::new();
    for piece in list.split(',') {
        match arns.last_mut() {
            Some(last) if !piece.trim_start().starts_with("arn:") => {
                last.push(',');
                last.push_str(piece);
            }
            _ => arns.push(piece.to_owned()),
        }
    }
    arns
}

/// The stack output that lists the worker's execution roles.
const WORKER_ROLES_OUTPUT: &str = "WorkerRoleArns";

/// The roles `stack`'s `WorkerRoleArns` output lists (comma-separated, as the
/// template joins them).
async fn stack_roles(sdk: &aws_config::SdkConfig, stack: &str) -> anyhow::Result<String> {
    let described = aws_sdk_cloudformation::Client::new(sdk)
        .describe_stacks()
        .stack_name(stack)
        .send()
        .await
        .with_context(|| format!("cloudformation:DescribeStacks {stack}"))?;
    let Some(found) = described.stacks().first() else {
        bail!("no stack {stack}");
    };
    let outputs = found.outputs();
    outputs
        .iter()
        .find(|o| o.output_key() == Some(WORKER_ROLES_OUTPUT))
        .and_then(|o| o.output_value())
        .filter(|v| !v.trim().is_empty())
        .map(str::to_owned)
        .with_context(|| {
            format!(
                "stack {stack} has no {WORKER_ROLES_OUTPUT} output (is it eks-task-worker's? its outputs: {})",
                outputs
                    .iter()
                    .filter_map(|o| o.output_key())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
}

/// The `bootstrap` subcommand's arguments.
struct BootstrapArgs<'a> {
    cluster: &'a str,
    role_arns: &'a [String],
    stack: Option<&'a str>,
    namespace: &'a str,
    region: Option<&'a str>,
    dry_run: bool,
}

async fn bootstrap(args: &BootstrapArgs<'_>) -> anyhow::Result<()> {
    use worker::task::bootstrap::{apply, plan, AuthMode, Grant};
    let cluster = args.cluster.to_owned();
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
    if let Some(r) = args.region {
        loader = loader.region(aws_config::Region::new(r.to_owned()));
    }
    let sdk = loader.load().await;
    let mut role_arns = args.role_arns.to_vec();
    if let Some(stack) = args.stack {
        let listed = stack_roles(&sdk, stack).await?;
        eprintln!("eks-task-worker: stack {stack}'s {WORKER_ROLES_OUTPUT}: {listed}");
        role_arns.push(listed);
    }
    let grants: Vec<Grant> = role_arns
        .iter()
        .flat_map(|list| split_arns(list))
        .map(|arn| arn.trim().to_owned())
        .filter(|arn| !arn.is_empty())
        .map(|arn| Grant {
            cluster: cluster.clone(),
            principal_arn: arn,
            namespace: args.namespace.to_owned(),
        })
        .collect();
    if grants.is_empty() {
        bail!("--role-arn ARN or --stack NAME (the worker's execution roles) is required");
    }
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
    let mut planned = Vec::new();
    for grant in grants {
        let steps = plan(&grant, mode).map_err(|e| anyhow::anyhow!("{e}"))?;
        planned.push((grant, steps));
    }
    if args.dry_run {
        print_out(&format!("authentication mode {mode:?}; would:"));
        for (grant, steps) in &planned {
            for s in steps {
                print_out(&format!("  {}", s.describe(grant)));
            }
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
    for (grant, steps) in &planned {
        for line in apply(steps, grant, &eks, kube.as_ref())
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?
        {
            print_out(&line);
        }
    }
    Ok(())
}

/// The state machine definition in `file`, else on stdin.
fn read_definition(file: Option<&str>) -> anyhow::Result<Value> {
    let text = match file {
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

/// The functions `migrate` was given (each optional: a definition needs only those its
/// native states use).
struct GivenFunctions<'a> {
    run_job: Option<&'a str>,
    call: Option<&'a str>,
    cluster_ops: Option<&'a str>,
}

/// Prints `file` (or stdin) migrated; says on stderr how many states moved. Refuses
/// (`HeartbeatTooShort`) a migrated state whose `HeartbeatSeconds` cannot be met, and a
/// native state whose function was not named (naming the state and the flag).
fn migrate(given: &GivenFunctions<'_>, file: Option<&str>) -> anyhow::Result<()> {
    use worker::contract::migration::{migrate, native_row, states, Function, Functions};
    let definition = read_definition(file)?;
    let native = states(&definition)?;
    let pick = |given: Option<&str>, function: Function, flag: &str| {
        let first = native.iter().find(|at| {
            definition
                .pointer(&format!("{}/Resource", at.pointer))
                .and_then(Value::as_str)
                .and_then(native_row)
                .is_some_and(|(row, _)| row.function == function)
        });
        match (given, first) {
            (Some(f), _) => Ok(f.to_owned()),
            (None, Some(at)) => Err(anyhow::anyhow!(
                "{}: a native state served by the {function:?} function: pass {flag} NAME_OR_ARN",
                at.path
            )),
            (None, None) => Ok(String::new()),
        }
    };
    let functions = Functions {
        run_job: pick(given.run_job, Function::RunJob, "--run-job-function")?,
        call: pick(given.call, Function::Call, "--call-function")?,
        cluster_ops: pick(
            given.cluster_ops,
            Function::ClusterOps,
            "--cluster-ops-function",
        )?,
    };
    let (migrated, moved) = migrate(&definition, &functions)?;
    let ours = [&functions.run_job, &functions.call, &functions.cluster_ops];
    let short = short_heartbeats(&migrated, |f| {
        ours.iter().any(|o| !o.is_empty() && o.as_str() == f)
    })?;
    if !short.is_empty() {
        bail!("HeartbeatTooShort: nothing printed\n{}", short.join("\n"));
    }
    print_out(&serde_json::to_string_pretty(&migrated)?);
    eprintln!("eks-task-worker: {moved} native EKS state(s) moved onto the worker");
    Ok(())
}

/// `check [--function F]... [FILE]`: every worker task's `HeartbeatSeconds` against
/// the heartbeat cadence of the settings in the environment. `Ok(false)` when one fails.
fn check(named: &[String], file: Option<&str>) -> anyhow::Result<bool> {
    let definition = read_definition(file)?;
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
    // Usage errors (an unknown or misspelt flag, a missing value or argument) exit 2 on
    // stderr, naming it;
    // --help and --version print on stdout and exit 0.
    let cli = Cli::parse();
    let outcome = match &cli.command {
        Command::Token(args) => token(args).await.map(|()| true),
        Command::Kubeconfig { cluster, output } => {
            kubeconfig(cluster, output.as_deref()).await.map(|()| true)
        }
        Command::Invoke { function, payload } => invoke(function, payload).await,
        Command::Bootstrap {
            cluster,
            role_arns,
            stack,
            namespace,
            region,
            dry_run,
        } => bootstrap(&BootstrapArgs {
            cluster,
            role_arns,
            stack: stack.as_deref(),
            namespace,
            region: region.as_deref(),
            dry_run: *dry_run,
        })
        .await
        .map(|()| true),
        Command::Migrate {
            run_job_function,
            call_function,
            cluster_ops_function,
            file,
        } => migrate(
            &GivenFunctions {
                run_job: run_job_function.as_deref(),
                call: call_function.as_deref(),
                cluster_ops: cluster_ops_function.as_deref(),
            },
            file.as_deref(),
        )
        .map(|()| true),
        Command::Check { functions, file } => check(functions, file.as_deref()),
        Command::Completions { shell } => {
            print_out(&completions(*shell));
            Ok(true)
        }
    };
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("eks-task-worker: {e:#}");
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::{exec_api_version, Cli, Command};

    /// The command line is clap's: a misspelt or unknown flag is refused (never ignored:
    /// `--role` for `--role-arn` would mint a token as the caller), `--help` and
    /// `--version` work on every subcommand, `bootstrap --role-arn` takes the stack's
    /// comma-separated list, `migrate` needs no cluster-ops function.
    #[test]
    fn the_command_line_refuses_what_it_does_not_know() {
        Cli::command().debug_assert();
        let parse = |args: &[&str]| {
            Cli::try_parse_from(std::iter::once("eks-task-worker").chain(args.iter().copied()))
        };
        let e = parse(&[
            "token",
            "--cluster",
            "prod",
            "--role",
            "arn:aws:iam::1:role/r",
        ])
        .err()
        .map(|e| e.kind());
        assert_eq!(e, Some(clap::error::ErrorKind::UnknownArgument));
        assert_eq!(
            parse(&["token", "--help"]).err().map(|e| e.kind()),
            Some(clap::error::ErrorKind::DisplayHelp)
        );
        assert_eq!(
            parse(&["--version"]).err().map(|e| e.kind()),
            Some(clap::error::ErrorKind::DisplayVersion)
        );
        let bootstrap = parse(&[
            "bootstrap",
            "--cluster",
            "c",
            "--role-arn",
            "arn:aws:iam::1:role/a,arn:aws:iam::1:role/b",
            "--role-arn",
            "arn:aws:iam::1:role/c",
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        match bootstrap.command {
            Command::Bootstrap {
                role_arns,
                namespace,
                ..
            } => {
                let arns: Vec<String> = role_arns
                    .iter()
                    .flat_map(|l| super::split_arns(l))
                    .collect();
                assert_eq!(arns.len(), 3, "{arns:?}");
                assert_eq!(namespace, "default");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            super::split_arns("arn:aws:iam::1:role/a,b,arn:aws:iam::1:role/c"),
            ["arn:aws:iam::1:role/a,b", "arn:aws:iam::1:role/c"],
            "a role name with a comma stays whole"
        );
        // The roles come from --role-arn or from the stack, one of them.
        assert!(parse(&["bootstrap", "--cluster", "c", "--stack", "s"]).is_ok());
        assert_eq!(
            parse(&["bootstrap", "--cluster", "c"])
                .err()
                .map(|e| e.kind()),
            Some(clap::error::ErrorKind::MissingRequiredArgument)
        );
        assert_eq!(
            parse(&[
                "bootstrap",
                "--cluster",
                "c",
                "--stack",
                "s",
                "--role-arn",
                "arn:aws:iam::1:role/a"
            ])
            .err()
            .map(|e| e.kind()),
            Some(clap::error::ErrorKind::ArgumentConflict)
        );
        assert!(parse(&["migrate", "--run-job-function", "r", "--call-function", "c"]).is_ok());
        assert!(parse(&["migrate", "--call-function", "c"]).is_ok());
        assert!(parse(&["invoke", "poller", "--payload", "p.json"]).is_err());
    }

    /// `migrate` asks only for the functions the definition's native states need, and
    /// names the state and the flag of one that is missing.
    #[test]
    fn migrate_asks_only_for_the_functions_it_needs() {
        let dir = std::env::temp_dir().join(format!("ekstw-migrate-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        let file = dir.join("native.asl.json");
        let task = |resource: &str| serde_json::json!({ "Type": "Task", "Resource": resource, "Parameters": { "ClusterName": "c" }, "End": true });
        let write = |resource: &str| {
            let definition =
                serde_json::json!({ "StartAt": "A", "States": { "A": task(resource) } });
            std::fs::write(&file, definition.to_string()).unwrap_or_else(|e| panic!("{e}"));
        };
        let path = file.to_string_lossy().into_owned();
        let given = |run_job, call| super::GivenFunctions {
            run_job,
            call,
            cluster_ops: None,
        };
        write("arn:aws:states:::eks:call");
        let e = super::migrate(&given(Some("r"), None), Some(&path))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            e.contains("States.A") && e.contains("--call-function"),
            "{e}"
        );
        assert!(super::migrate(&given(None, Some("c")), Some(&path)).is_ok());
        write("arn:aws:states:::eks:runJob");
        let e = super::migrate(&given(None, Some("c")), Some(&path))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("--run-job-function"), "{e}");
        assert!(super::migrate(&given(Some("r"), None), Some(&path)).is_ok());
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Every shell's script names the command and its subcommands; an unknown shell is a
    /// usage error.
    #[test]
    fn completions_cover_every_subcommand() {
        for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
            let Ok(super::Cli {
                command: super::Command::Completions { shell },
            }) = super::Cli::try_parse_from(["eks-task-worker", "completions", shell])
            else {
                panic!("{shell}: not parsed");
            };
            let script = super::completions(shell);
            for word in [
                "eks-task-worker",
                "bootstrap",
                "migrate",
                "kubeconfig",
                "role-arn",
            ] {
                assert!(script.contains(word), "{shell}: no {word}");
            }
        }
        assert!(super::Cli::try_parse_from(["eks-task-worker", "completions", "tcsh"]).is_err());
    }

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
