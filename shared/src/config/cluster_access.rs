//! Who the worker lets into a cluster it creates (`CLUSTER_ACCESS_PRINCIPALS`,
//! `CLUSTER_ACCESS_POLICY`): natively the state machine's one role that made a cluster
//! can run Jobs on it; here the functions that run Jobs have roles of their own, and
//! each is given an EKS access entry on the new cluster.

use crate::contract::payload::is_iam_arn;

/// EKS's cluster-admin access policy: what the creator of a cluster has natively.
pub const CLUSTER_ADMIN_POLICY: &str =
    "arn:aws:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy";

/// The principals given access to every cluster the worker creates, and the policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerAccess {
    /// IAM role (or user) ARNs; empty: nobody is let in (the switch is off).
    pub principals: Vec<String>,
    /// The EKS access policy associated with each, cluster-wide.
    pub policy_arn: String,
}

impl Default for WorkerAccess {
    fn default() -> Self {
        Self {
            principals: Vec::new(),
            policy_arn: CLUSTER_ADMIN_POLICY.to_owned(),
        }
    }
}

impl WorkerAccess {
    /// Is anyone let in?
    #[must_use]
    pub fn is_on(&self) -> bool {
        !self.principals.is_empty()
    }

    /// From the two settings' values (absent: none, and the admin policy).
    ///
    /// # Errors
    /// `(setting, value, expected)` for a principal that is not an IAM role or user ARN,
    /// or a policy that is not an EKS access policy ARN.
    pub fn parse(
        principals: Option<&str>,
        policy: Option<&str>,
    ) -> Result<Self, (&'static str, String, &'static str)> {
        let principals = principals
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(|p| {
                if is_iam_arn(p, &["role", "user"]) {
                    Ok(p.to_owned())
                } else {
                    Err((
                        "CLUSTER_ACCESS_PRINCIPALS",
                        p.to_owned(),
                        "a comma-separated list of IAM role (or user) ARNs",
                    ))
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        let policy_arn = match policy.map(str::trim).filter(|p| !p.is_empty()) {
            None => CLUSTER_ADMIN_POLICY.to_owned(),
            Some(p) if is_access_policy(p) => p.to_owned(),
            Some(p) => return Err((
                "CLUSTER_ACCESS_POLICY",
                p.to_owned(),
                "an EKS access policy ARN, arn:<partition>:eks::aws:cluster-access-policy/<name>",
            )),
        };
        Ok(Self {
            principals,
            policy_arn,
        })
    }
}

/// `arn:<partition>:eks::aws:cluster-access-policy/<name>`.
fn is_access_policy(arn: &str) -> bool {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    matches!(parts.as_slice(), ["arn", partition, "eks", "", "aws", rest]
    if !partition.is_empty()
        && rest.strip_prefix("cluster-access-policy/").is_some_and(|n| {
            !n.is_empty() && n.chars().all(|c| c.is_ascii_alphanumeric())
        }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_by_default_with_the_admin_policy() {
        let access = WorkerAccess::parse(None, None).unwrap_or_else(|e| panic!("{e:?}"));
        assert!(!access.is_on());
        assert_eq!(access.policy_arn, CLUSTER_ADMIN_POLICY);
        assert_eq!(
            WorkerAccess::parse(Some(" , "), Some("")).ok(),
            Some(access)
        );
    }

    #[test]
    fn principals_and_policy_are_checked() {
        let access = WorkerAccess::parse(
            Some("arn:aws:iam::1:role/a, arn:aws:iam::1:role/service-role/b"),
            Some("arn:aws:eks::aws:cluster-access-policy/AmazonEKSEditPolicy"),
        )
        .unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(access.principals.len(), 2);
        assert!(access.is_on());
        assert_eq!(
            WorkerAccess::parse(Some("arn:aws:sts::1:assumed-role/a/b"), None)
                .err()
                .map(|e| e.0),
            Some("CLUSTER_ACCESS_PRINCIPALS")
        );
        for bad in [
            "AmazonEKSEditPolicy",
            "arn:aws:iam::aws:policy/AdministratorAccess",
            "arn:aws:eks::aws:cluster-access-policy/",
            "arn:aws:eks::aws:cluster-access-policy/x/../y",
        ] {
            assert_eq!(
                WorkerAccess::parse(None, Some(bad)).err().map(|e| e.0),
                Some("CLUSTER_ACCESS_POLICY"),
                "{bad}"
            );
        }
    }
}
