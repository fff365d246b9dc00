//! `eks-task-worker kubeconfig`: the kubeconfig it writes lets a real Kubernetes client
//! (kube-rs, which runs exec credential plugins as kubectl does) reach the local API
//! server with the worker's own tokens.

// Test helpers fail the test by panicking.
#![allow(clippy::panic)]

use std::process::Command;

use serde_json::{json, Value};
use world_tests::{cli, unique, World};

/// The environment a user's shell would have: the world's AWS endpoint and the worker's
/// keys.
fn aws_env(world: &World) -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ENDPOINT_URL", world.fact("/aws_endpoint")),
        ("AWS_REGION", world.fact("/region")),
        ("AWS_ACCESS_KEY_ID", world.fact("/worker/access_key_id")),
        (
            "AWS_SECRET_ACCESS_KEY",
            world.fact("/worker/secret_access_key"),
        ),
    ]
}

/// Runs `eks-task-worker kubeconfig` with `args`: (success, stdout, stderr).
fn kubeconfig(world: &World, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(cli())
        .arg("kubeconfig")
        .args(args)
        .envs(aws_env(world))
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Lists the pods of the test namespace through a client built from `config`.
async fn list_pods(world: &World, config: &Value) -> Result<String, String> {
    let kubeconfig =
        kube::config::Kubeconfig::from_yaml(&config.to_string()).map_err(|e| e.to_string())?;
    let options = kube::config::KubeConfigOptions::default();
    let client_config = kube::Config::from_custom_kubeconfig(kubeconfig, &options)
        .await
        .map_err(|e| e.to_string())?;
    let client = kube::Client::try_from(client_config).map_err(|e| e.to_string())?;
    let request = http::Request::get(format!("/api/v1/namespaces/{}/pods", world.namespace()))
        .body(Vec::new())
        .map_err(|e| e.to_string())?;
    client
        .request_text(request)
        .await
        .map_err(|e| e.to_string())
}

#[tokio::test]
async fn a_client_reaches_the_cluster_with_the_kubeconfig_it_writes() {
    let world = World::get();
    let path = std::env::temp_dir().join(format!("{}.kubeconfig", unique("kc")));
    let path_text = path.to_string_lossy().into_owned();
    let (ok, _, err) = kubeconfig(
        &world,
        &["--cluster", &world.cluster(), "--output", &path_text],
    );
    assert!(ok, "{err}");
    let mut config: Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{e}")))
            .unwrap_or_else(|e| panic!("{e}"));
    let _ = std::fs::remove_file(&path);
    assert_eq!(config["current-context"], world.cluster().as_str());
    // The plugin runs with the environment the client gives it: here the test's AWS
    // endpoint and keys, as a user's shell would have them.
    let env: Vec<Value> = aws_env(&world)
        .into_iter()
        .map(|(name, value)| json!({ "name": name, "value": value }))
        .collect();
    config["users"][0]["user"]["exec"]["env"] = json!(env);
    for version in [
        "client.authentication.k8s.io/v1beta1",
        "client.authentication.k8s.io/v1",
    ] {
        // Either version of the exec configuration works. (kube-rs takes an answer in
        // either version; kubectl insists on the one it asked for in
        // KUBERNETES_EXEC_INFO, which the CLI's unit test holds the token to.)
        config["users"][0]["user"]["exec"]["apiVersion"] = json!(version);
        let pods = list_pods(&world, &config)
            .await
            .unwrap_or_else(|e| panic!("{version}: {e}"));
        let pods: Value = serde_json::from_str(&pods).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(pods["kind"], "PodList", "{version}: {pods}");
    }
}

#[tokio::test]
async fn a_cluster_that_does_not_exist_is_named() {
    let world = World::get();
    let missing = unique("no-such-cluster");
    let (ok, out, err) = kubeconfig(&world, &["--cluster", &missing]);
    assert!(!ok, "{out}");
    assert!(out.is_empty(), "nothing written: {out}");
    assert!(err.contains(&missing), "{err}");
    let (ok, _, err) = kubeconfig(&world, &[]);
    assert!(!ok && err.contains("--cluster <NAME>"), "{err}");
}
