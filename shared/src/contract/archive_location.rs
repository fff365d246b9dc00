//! Where whole logs go: an `s3://bucket/prefix` location and the key of each log.

/// Where logs are archived: `s3://bucket/prefix`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveLocation {
    /// The bucket.
    pub bucket: String,
    /// The key prefix, without leading or trailing `/` (may be empty).
    pub prefix: String,
}

impl ArchiveLocation {
    /// Parses `s3://bucket[/prefix]`.
    ///
    /// # Errors
    /// What is wrong with it, to go after the field's name.
    pub fn parse(uri: &str) -> Result<Self, String> {
        let rest = uri
            .strip_prefix("s3://")
            .ok_or_else(|| format!("{uri:?} is not an S3 URI: s3://<bucket>/<prefix>"))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let valid_bucket = (3..=63).contains(&bucket.len())
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
            && !bucket.starts_with(['-', '.'])
            && !bucket.ends_with(['-', '.']);
        if !valid_bucket {
            return Err(format!(
                "{bucket:?} is not a bucket name (3 to 63 lowercase letters, digits, '-' and '.')"
            ));
        }
        if prefix.len() > 512 || prefix.chars().any(char::is_control) {
            return Err(
                "the prefix must be at most 512 characters, without control characters".into(),
            );
        }
        Ok(Self {
            bucket: bucket.to_owned(),
            prefix: prefix.trim_matches('/').to_owned(),
        })
    }

    /// The location as a URI.
    #[must_use]
    pub fn uri(&self) -> String {
        if self.prefix.is_empty() {
            format!("s3://{}", self.bucket)
        } else {
            format!("s3://{}/{}", self.bucket, self.prefix)
        }
    }

    /// The key of one container's log (`container`: its name, or `init/<name>` for an
    /// init container).
    #[must_use]
    pub fn key(&self, namespace: &str, job: &str, uid: &str, pod: &str, container: &str) -> String {
        let path = format!("{namespace}/{job}/{uid}/{pod}/{container}.log");
        if self.prefix.is_empty() {
            path
        } else {
            format!("{}/{path}", self.prefix)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_parse_and_name_keys() {
        let l =
            ArchiveLocation::parse("s3://logs-bucket/team/jobs/").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (l.bucket.as_str(), l.prefix.as_str()),
            ("logs-bucket", "team/jobs")
        );
        assert_eq!(
            l.key("ns", "j", "u-1", "p", "c"),
            "team/jobs/ns/j/u-1/p/c.log"
        );
        assert_eq!(l.uri(), "s3://logs-bucket/team/jobs");
        let bare = ArchiveLocation::parse("s3://logs-bucket").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(bare.key("ns", "j", "u", "p", "c"), "ns/j/u/p/c.log");
        for bad in [
            "logs-bucket/x",
            "s3://",
            "s3://UPPER/x",
            "s3://ab",
            "s3://-bucket/x",
            "https://b/x",
        ] {
            assert!(ArchiveLocation::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_prefix_is_at_most_512_characters_without_control_characters() {
        let longest = format!("s3://logs-bucket/{}", "p".repeat(512));
        assert!(ArchiveLocation::parse(&longest).is_ok());
        for bad in [
            format!("s3://logs-bucket/{}", "p".repeat(513)),
            format!("s3://logs-bucket/{}", "p".repeat(600)),
            "s3://logs-bucket/team\njobs".to_owned(),
        ] {
            assert!(ArchiveLocation::parse(&bad).is_err(), "{bad:?}");
        }
    }
}
