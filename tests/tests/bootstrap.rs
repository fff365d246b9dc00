//! `eks-task-worker bootstrap` against the local world: before it, a new identity gets
//! 403; after it (run by the cluster admin), that identity runs a Job in its namespace.

// Test helpers fail the test by panicking.
#![allow(clippy::panic)]

use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};
use worker::ports::kube::KubeRequest;
use world_tests::{cli, request, send, sim_job, unique, until_job, World};

/// A new IAM user in moto: (ARN, access key, secret).
async fn new_user(world: &World, name: &str) -> (String, String, String) {
    let iam = aws_sdk_iam::Client::new(&world.sdk("worker").await);
    let user = iam
        .create_user()
        .user_name(name)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e:?}"));
    let arn = user.user().map(|u| u.arn().to_owned()).unwrap_or_default();
    let key = iam
        .create_access_key()
        .user_name(name)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e:?}"));
    let key = key.access_key().unwrap_or_else(|| panic!("no key"));
    (
        arn,
        key.access_key_id().to_owned(),
        key.secret_access_key().to_owned(),
    )
}

fn bootstrap(world: &World, args: &[&str]) -> (bool, String) {
    let out = Command::new(cli())
        .arg("bootstrap")
        .args(args)
        .env("AWS_ENDPOINT_URL", world.fact("/aws_endpoint"))
        .env("AWS_REGION", world.fact("/region"))
        .env(
            "AWS_ACCESS_KEY_ID",
            world.fact("/cluster_admin/access_key_id"),
        )
        .env(
            "AWS_SECRET_ACCESS_KEY",
            world.fact("/cluster_admin/secret_access_key"),
        )
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[tokio::test]
async fn bootstrap_grants_a_new_identity_a_namespace_of_its_own() {
    let world = World::get();
    let name = unique("bs");
    let (arn, key, secret) = new_user(&world, &name).await;
    let who = json!({ "access_key_id": key, "secret_access_key": secret });
    let mut facts = world.clone();
    facts.facts["newcomer"] = who;
    let token = facts
        .botocore_token("newcomer", &world.cluster(), None)
        .unwrap_or_else(|e| panic!("{e}"));
    let kube = facts.kube(&token).unwrap_or_else(|e| panic!("{e}"));
    let jobs = format!("/apis/batch/v1/namespaces/{name}/jobs");
    let job = sim_job("after-bootstrap", &["main"], json!({}), 1);
    let before = send(&kube, request(http::Method::POST, &jobs, Some(&job)))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        before.status,
        403,
        "before bootstrap: {}",
        before.body_value()
    );

    let (ok, out) = bootstrap(
        &world,
        &[
            "--cluster",
            &world.cluster(),
            "--role-arn",
            &arn,
            "--namespace",
            &name,
            "--dry-run",
        ],
    );
    assert!(ok, "{out}");
    assert!(
        out.contains("would:")
            && out.contains("aws-auth")
            && out.contains(&format!("create namespace {name}")),
        "{out}"
    );
    let ns = send(
        &world.worker_kube().unwrap_or_else(|e| panic!("{e}")),
        KubeRequest::get(format!("/api/v1/namespaces/{name}")),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_ne!(ns.status, 200, "a dry run creates nothing");

    let (ok, out) = bootstrap(
        &world,
        &[
            "--cluster",
            &world.cluster(),
            "--role-arn",
            &arn,
            "--namespace",
            &name,
        ],
    );
    assert!(ok, "{out}");
    assert!(out.contains("kube-system/aws-auth: mapped"), "{out}");
    // Again, with a second role beside the first, as the stack's comma-separated
    // `WorkerRoleArns` output lists them: the first is already there, the second mapped.
    let (second, second_key, second_secret) = new_user(&world, &format!("{name}-2")).await;
    let (ok, again) = bootstrap(
        &world,
        &[
            "--cluster",
            &world.cluster(),
            "--role-arn",
            &format!("{arn},{second}"),
            "--namespace",
            &name,
        ],
    );
    assert!(
        ok && again.contains("already mapped") && again.contains("already there"),
        "running it twice is harmless: {again}"
    );
    assert!(
        again.contains(": mapped"),
        "the second role mapped: {again}"
    );
    facts.facts["second"] =
        json!({ "access_key_id": second_key, "secret_access_key": second_secret });
    let second_kube = facts
        .kube(
            &facts
                .botocore_token("second", &world.cluster(), None)
                .unwrap_or_else(|e| panic!("{e}")),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    let listed = send(&second_kube, KubeRequest::get(jobs.clone()))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        listed.status,
        200,
        "the second role let in: {}",
        listed.body_value()
    );

    let after = send(&kube, request(http::Method::POST, &jobs, Some(&job)))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(after.status, 201, "after bootstrap: {}", after.body_value());
    until_job(
        &kube,
        &name,
        "after-bootstrap",
        Duration::from_secs(30),
        |j| {
            worker::task::job::phase(j.unwrap_or(&Value::Null))
                == worker::task::job::Phase::Complete
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let elsewhere = send(
        &kube,
        KubeRequest::get("/api/v1/namespaces/kube-system/pods"),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        elsewhere.status, 403,
        "least privilege: nothing outside its namespace"
    );
}

#[tokio::test]
async fn bootstrap_refuses_a_principal_that_is_not_iam() {
    let world = World::get();
    let (ok, out) = bootstrap(
        &world,
        &[
            "--cluster",
            &world.cluster(),
            "--role-arn",
            "arn:aws:sts::123456789012:assumed-role/x/y",
            "--dry-run",
        ],
    );
    assert!(!ok);
    assert!(out.contains("--role-arn"), "{out}");
}

/// A stack in moto's CloudFormation with `outputs` (key → value), as the worker's
/// stack would show them.
async fn stack_with_outputs(world: &World, name: &str, outputs: &[(&str, &str)]) {
    let outputs: serde_json::Map<String, Value> = outputs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), json!({ "Value": v })))
        .collect();
    let template = json!({
        "Resources": { "Placeholder": { "Type": "AWS::SQS::Queue", "Properties": { "QueueName": name } } },
        "Outputs": outputs,
    });
    aws_sdk_cloudformation::Client::new(&world.sdk("worker").await)
        .create_stack()
        .stack_name(name)
        .template_body(template.to_string())
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e:?}"));
}

/// `bootstrap --stack NAME` lets in every role of the stack's `WorkerRoleArns` output
/// (before: 403; after: each lists Jobs in the namespace); a stack that is not there,
/// or is not the worker's, is named and changes nothing.
#[tokio::test]
async fn bootstrap_from_the_stack_grants_every_role_it_outputs() {
    let world = World::get();
    let name = unique("bss");
    let mut facts = world.clone();
    let jobs = format!("/apis/batch/v1/namespaces/{name}/jobs");
    let mut arns = Vec::new();
    let mut kubes = Vec::new();
    for who in ["one", "two"] {
        let (arn, key, secret) = new_user(&world, &format!("{name}-{who}")).await;
        facts.facts[who] = json!({ "access_key_id": key, "secret_access_key": secret });
        let token = facts
            .botocore_token(who, &world.cluster(), None)
            .unwrap_or_else(|e| panic!("{e}"));
        let kube = facts.kube(&token).unwrap_or_else(|e| panic!("{e}"));
        let before = send(&kube, KubeRequest::get(jobs.clone()))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            before.status,
            403,
            "before bootstrap: {}",
            before.body_value()
        );
        arns.push(arn);
        kubes.push(kube);
    }
    let stack = format!("{name}-stack");
    stack_with_outputs(&world, &stack, &[("WorkerRoleArns", &arns.join(","))]).await;
    let foreign = format!("{name}-other");
    stack_with_outputs(&world, &foreign, &[("SomethingElse", "x")]).await;

    let (ok, out) = bootstrap(
        &world,
        &[
            "--cluster",
            &world.cluster(),
            "--stack",
            &format!("{name}-missing"),
            "--namespace",
            &name,
        ],
    );
    assert!(
        !ok && out.contains("DescribeStacks"),
        "a stack that is not there: {out}"
    );
    let (ok, out) = bootstrap(
        &world,
        &[
            "--cluster",
            &world.cluster(),
            "--stack",
            &foreign,
            "--namespace",
            &name,
        ],
    );
    assert!(
        !ok && out.contains("has no WorkerRoleArns output") && out.contains("SomethingElse"),
        "a stack that is not the worker's: {out}"
    );
    let ns = send(
        &world.admin_kube().unwrap_or_else(|e| panic!("{e}")),
        KubeRequest::get(format!("/api/v1/namespaces/{name}")),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(ns.status, 404, "a refused stack changes nothing");

    let (ok, out) = bootstrap(
        &world,
        &[
            "--cluster",
            &world.cluster(),
            "--stack",
            &stack,
            "--namespace",
            &name,
        ],
    );
    assert!(ok, "{out}");
    for (arn, kube) in arns.iter().zip(&kubes) {
        assert!(out.contains(arn.as_str()), "{arn} named: {out}");
        let after = send(kube, KubeRequest::get(jobs.clone()))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(after.status, 200, "{arn} let in: {}", after.body_value());
    }
}
