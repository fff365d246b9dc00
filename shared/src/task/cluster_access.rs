//! The worker's own roles let into a cluster the worker created: natively the one role
//! that made a cluster runs Jobs on it; here run-job, call, the poller and the activity
//! function have roles of their own ([`WorkerAccess`]). A create asks EKS for access
//! entries where the payload leaves the mode open ([`ask_for_access_entries`]), and once
//! the cluster is ACTIVE each principal gets an access entry and the access policy,
//! cluster-wide ([`grant`]), before the create is answered. Both steps are idempotent: a
//! poll, a redelivery or a retry does them again harmlessly.

use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use serde_json::{json, Value};

use crate::config::cluster_access::WorkerAccess;
use crate::contract::error::TaskError;
use crate::contract::tags::{tag, MANAGED_BY, MANAGED_TAG};
use crate::ports::eks::{eks_failure, EksApi};

/// The mode a create asks for when the payload names none and someone is to be let in:
/// access entries and the `aws-auth` ConfigMap both (EKS's API default is the ConfigMap
/// alone, where access entries cannot be made).
pub const MODE_FOR_ACCESS_ENTRIES: &str = "API_AND_CONFIG_MAP";

/// Sets `accessConfig.authenticationMode` of a createCluster request body (camelCase,
/// as the API takes it) to [`MODE_FOR_ACCESS_ENTRIES`] when access is on and the
/// payload chose no mode; a mode the payload chose is kept.
pub fn ask_for_access_entries(body: &mut Value, access: &WorkerAccess) {
    if !access.is_on() || !body.is_object() {
        return;
    }
    let config = &mut body["accessConfig"];
    if !config.is_object() {
        *config = json!({});
    }
    if config.get("authenticationMode").is_none() {
        config["authenticationMode"] = json!(MODE_FOR_ACCESS_ENTRIES);
    }
}

/// What [`grant`] did for one principal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Granted {
    /// Entry and policy are in place.
    Entry,
    /// The cluster's mode has no access entries (`CONFIG_MAP`): nobody was let in.
    ConfigMapOnly,
}

/// Gives every principal of `access` an access entry on `cluster` (described as
/// `described`, EKS's `{"cluster": …}`), tagged as the worker's, and associates the
/// access policy cluster-wide. An entry already there is kept.
///
/// # Errors
/// The EKS error of `CreateAccessEntry` or `AssociateAccessPolicy`.
pub async fn grant(
    eks: &dyn EksApi,
    cluster: &str,
    described: &Value,
    access: &WorkerAccess,
) -> Result<Granted, TaskError> {
    if !access.is_on() {
        return Ok(Granted::Entry);
    }
    let mode = described["cluster"]["accessConfig"]["authenticationMode"]
        .as_str()
        .unwrap_or("CONFIG_MAP");
    if !matches!(mode, "API" | "API_AND_CONFIG_MAP") {
        tracing::warn!(
            cluster,
            mode,
            "the cluster's authentication mode has no access entries: the worker's roles are not let in (see docs/cluster-operations.md, 'Clusters the worker creates are open to the worker')"
        );
        return Ok(Granted::ConfigMapOnly);
    }
    let entries = format!("/clusters/{cluster}/access-entries");
    for principal in &access.principals {
        let entry = format!(
            "{entries}/{}",
            utf8_percent_encode(principal, NON_ALPHANUMERIC)
        );
        let created = eks
            .call(
                http::Method::POST,
                &entries,
                Some(&json!({ "principalArn": principal, "tags": { MANAGED_TAG: MANAGED_BY } })),
            )
            .await;
        match created {
            Ok(_) => tracing::info!(cluster, principal, "access entry created"),
            Err(e) if e.is_in_use() => {
                // Already there: the worker's own (an earlier try of this grant) gets
                // its policy; any other (the creator's, say) is kept as it is.
                let there = eks
                    .call(http::Method::GET, &entry, None)
                    .await
                    .map_err(eks_failure("DescribeAccessEntry"))?;
                if tag(&there["accessEntry"], MANAGED_TAG) != Some(MANAGED_BY) {
                    tracing::info!(
                        cluster,
                        principal,
                        "an access entry the worker did not make is there already: kept as it is"
                    );
                    continue;
                }
            }
            Err(e) => return Err(eks_failure("CreateAccessEntry")(e)),
        }
        eks.call(
            http::Method::POST,
            &format!("{entry}/access-policies"),
            Some(&json!({ "policyArn": access.policy_arn, "accessScope": { "type": "cluster" } })),
        )
        .await
        .map_err(eks_failure("AssociateAccessPolicy"))?;
    }
    Ok(Granted::Entry)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::eks::EksError;
    use crate::testing::ScriptedEks;

    fn access() -> WorkerAccess {
        WorkerAccess::parse(
            Some("arn:aws:iam::1:role/run-job,arn:aws:iam::1:role/service-role/poller"),
            None,
        )
        .unwrap_or_else(|e| panic!("{e:?}"))
    }

    #[test]
    fn a_create_asks_for_access_entries_only_where_the_payload_left_the_mode_open() {
        let mut body = json!({ "name": "c" });
        ask_for_access_entries(&mut body, &access());
        assert_eq!(
            body["accessConfig"]["authenticationMode"],
            MODE_FOR_ACCESS_ENTRIES
        );
        let mut chosen = json!({ "name": "c", "accessConfig": { "authenticationMode": "CONFIG_MAP", "bootstrapClusterCreatorAdminPermissions": false } });
        ask_for_access_entries(&mut chosen, &access());
        assert_eq!(chosen["accessConfig"]["authenticationMode"], "CONFIG_MAP");
        let mut off = json!({ "name": "c" });
        ask_for_access_entries(&mut off, &WorkerAccess::default());
        assert_eq!(
            off,
            json!({ "name": "c" }),
            "the switch off changes nothing"
        );
    }

    const RUN_JOB_POLICY: &str =
        "POST /clusters/c/access-entries/arn%3Aaws%3Aiam%3A%3A1%3Arole%2Frun%2Djob/access-policies";
    const POLLER_POLICY: &str = "POST /clusters/c/access-entries/arn%3Aaws%3Aiam%3A%3A1%3Arole%2Fservice%2Drole%2Fpoller/access-policies";
    const POLLER_ENTRY: &str =
        "GET /clusters/c/access-entries/arn%3Aaws%3Aiam%3A%3A1%3Arole%2Fservice%2Drole%2Fpoller";

    #[tokio::test]
    async fn every_principal_gets_an_entry_and_the_policy_and_an_existing_entry_is_kept() {
        let in_use = EksError {
            status: 409,
            kind: "ResourceInUseException".into(),
            message: "in use".into(),
        };
        let eks = ScriptedEks::new(&[
            (
                "POST /clusters/c/access-entries",
                vec![Ok(json!({})), Err(in_use)],
            ),
            (RUN_JOB_POLICY, vec![Ok(json!({}))]),
            (POLLER_POLICY, vec![Ok(json!({}))]),
            (
                POLLER_ENTRY,
                vec![Ok(
                    json!({ "accessEntry": { "tags": { MANAGED_TAG: MANAGED_BY } } }),
                )],
            ),
        ]);
        let described = json!({ "cluster": { "accessConfig": { "authenticationMode": "API" } } });
        let done = grant(&eks, "c", &described, &access()).await;
        assert_eq!(done.ok(), Some(Granted::Entry));
        assert_eq!(
            eks.calls(),
            vec![
                "POST /clusters/c/access-entries",
                RUN_JOB_POLICY,
                "POST /clusters/c/access-entries",
                POLLER_ENTRY,
                POLLER_POLICY
            ]
        );
        let bodies = eks.bodies();
        assert_eq!(bodies[0]["principalArn"], "arn:aws:iam::1:role/run-job");
        assert_eq!(
            bodies[0]["tags"][MANAGED_TAG], MANAGED_BY,
            "the entry is tagged as the worker's (IAM lets it grant only on those)"
        );
        assert_eq!(
            bodies[2]["principalArn"],
            "arn:aws:iam::1:role/service-role/poller"
        );
        assert_eq!(bodies[4]["accessScope"]["type"], "cluster");
        assert_eq!(bodies[4]["policyArn"], access().policy_arn);
    }

    #[tokio::test]
    async fn an_entry_the_worker_did_not_make_is_kept_as_it_is() {
        let in_use = EksError {
            status: 409,
            kind: "ResourceInUseException".into(),
            message: "in use".into(),
        };
        let creator = WorkerAccess::parse(Some("arn:aws:iam::1:role/run-job"), None)
            .unwrap_or_else(|e| panic!("{e:?}"));
        let eks = ScriptedEks::new(&[
            ("POST /clusters/c/access-entries", vec![Err(in_use)]),
            (
                "GET /clusters/c/access-entries/arn%3Aaws%3Aiam%3A%3A1%3Arole%2Frun%2Djob",
                vec![Ok(json!({ "accessEntry": { "tags": {} } }))],
            ),
        ]);
        let described = json!({ "cluster": { "accessConfig": { "authenticationMode": "API" } } });
        let done = grant(&eks, "c", &described, &creator).await;
        assert_eq!(done.ok(), Some(Granted::Entry));
        assert!(
            !eks.calls().iter().any(|c| c.ends_with("/access-policies")),
            "no policy on an entry that is not the worker's: {:?}",
            eks.calls()
        );
    }

    #[tokio::test]
    async fn a_config_map_cluster_is_left_alone_and_a_refusal_is_the_error() {
        let eks = ScriptedEks::new(&[]);
        let described =
            json!({ "cluster": { "accessConfig": { "authenticationMode": "CONFIG_MAP" } } });
        let done = grant(&eks, "c", &described, &access()).await;
        assert_eq!(done.ok(), Some(Granted::ConfigMapOnly));
        assert!(eks.calls().is_empty());
        let denied = ScriptedEks::new(&[(
            "POST /clusters/c/access-entries",
            vec![Err(EksError {
                status: 403,
                kind: "AccessDeniedException".into(),
                message: "not allowed".into(),
            })],
        )]);
        let described = json!({ "cluster": { "accessConfig": { "authenticationMode": "API_AND_CONFIG_MAP" } } });
        let e = grant(&denied, "c", &described, &access()).await.err();
        assert!(e.is_some_and(|e| {
            let cause = e.cause.to_string();
            cause.contains("CreateAccessEntry") && cause.contains("AccessDeniedException")
        }));
    }
}
