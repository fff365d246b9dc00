//! A payload's `RoleArn` assumed through `aws-config`'s `AssumeRoleProvider`, with the
//! deployment's `ExternalId` (`ASSUME_ROLE_EXTERNAL_ID`): the fault proxy stands in for
//! a role whose trust asks for one (moto checks no trust policy) and refuses every
//! `AssumeRole` without it, as STS would with `AccessDenied`.

// Test helpers fail the test by panicking.
#![allow(clippy::panic)]

use serde_json::json;
use worker::adapters::credentials::AwsCredentials;
use worker::ports::credentials::CredentialSource;
use world_tests::{FaultProxy, World};

#[tokio::test]
async fn an_assumed_role_gets_the_external_id_its_trust_asks_for() {
    let world = World::get();
    let proxy = FaultProxy::start(&world);
    let refused = "<ErrorResponse><Error><Type>Sender</Type><Code>AccessDenied</Code><Message>not authorized to perform sts:AssumeRole</Message></Error></ErrorResponse>";
    proxy
        .inject(
            json!([{ "id": "no-external-id", "side": "aws", "target": "^AssumeRole$",
                         "body": "^((?!ExternalId=ext-7(&|$)).)*$", "status": 403, "reply": refused,
                         "headers": { "Content-Type": "text/xml" }, "times": 0 }]),
        )
        .await;
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(world.fact("/region")))
        .endpoint_url(&proxy.aws_endpoint)
        .credentials_provider(world.credentials("worker"))
        .load()
        .await;
    let role = world.cluster_role();

    let with = AwsCredentials::new(&sdk)
        .unwrap_or_else(|e| panic!("{e}"))
        .with_external_id(Some("ext-7".into()));
    let assumed = with
        .credentials(Some(&role))
        .await
        .unwrap_or_else(|e| panic!("the ExternalId was not sent: {e}"));
    assert!(
        assumed.session_token().is_some(),
        "assumed-role credentials"
    );

    let without = AwsCredentials::new(&sdk).unwrap_or_else(|e| panic!("{e}"));
    let e = without
        .credentials(Some(&role))
        .await
        .expect_err("refused without the ExternalId");
    assert!(e.to_string().contains("sts:AssumeRole"), "{e}");
    assert_eq!(
        proxy.fired("no-external-id").await,
        1,
        "one refusal: the call without it"
    );
}
