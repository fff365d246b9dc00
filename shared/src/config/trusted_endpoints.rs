//! `TRUSTED_ENDPOINTS`: API servers a payload's `Endpoint` may name besides the one EKS
//! reports for its cluster (clusters that are not EKS, a proxy of one's own), each bound
//! to the one cluster name it serves, so that a token minted for another cluster never
//! goes to it.

use url::Url;

/// One entry: `name=https://host[:port]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedEndpoint {
    /// The `ClusterName` whose tokens may go to it.
    pub cluster: String,
    /// The endpoint: an origin, no path.
    pub endpoint: Url,
}

/// What an entry must look like, for the setting's error.
pub const EXPECTED: &str = "a comma-separated list of cluster-name=https://host[:port]";

/// Parses the setting: entries separated by commas, blanks ignored.
///
/// # Errors
/// The first entry that is not `name=https://host[:port]` (an EKS cluster name, an
/// endpoint as a payload's `Endpoint` must be).
pub fn parse(setting: &str) -> Result<Vec<TrustedEndpoint>, String> {
    setting
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(|entry| {
            let (cluster, endpoint) = entry.split_once('=').ok_or_else(|| entry.to_owned())?;
            crate::contract::payload::eks_name("ClusterName", cluster, 100)
                .map_err(|_| entry.to_owned())?;
            let endpoint =
                crate::contract::payload::endpoint_url(endpoint).map_err(|_| entry.to_owned())?;
            Ok(TrustedEndpoint {
                cluster: cluster.to_owned(),
                endpoint,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_name_their_cluster_and_an_origin() {
        let parsed = parse(" a=https://10.0.0.1:6443 , ,b=https://k.example ")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            parsed
                .iter()
                .map(|t| (t.cluster.as_str(), t.endpoint.as_str()))
                .collect::<Vec<_>>(),
            [("a", "https://10.0.0.1:6443/"), ("b", "https://k.example/")]
        );
        assert_eq!(parse(""), Ok(Vec::new()));
        for bad in [
            "https://k.example",
            "=https://k.example",
            "a b=https://k.example",
            "a=http://k.example",
            "a=https://k.example/api/v1/namespaces/x/services/y:80/proxy",
            "a=https://k.example,https://other",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
