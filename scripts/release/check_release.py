"""Checks a release before it is shipped: every local file its template names (each
function's `CodeUri` zip, each example's `DefinitionUri`) is in the release, so that
`sam deploy --template-file` or `aws cloudformation package` finds it; and the
Serverless Application Repository metadata (the template's `Metadata:
AWS::ServerlessRepo::Application`) is what `sam publish` and the repository require:
every field present, each within the repository's limits, the version the workspace's,
and the files it names in the release. Exits 1 naming each fault.

Usage: check_release.py RELEASE_DIR VERSION
"""
import os
import re
import sys

import yaml


class Loader(yaml.SafeLoader):
    """YAML with CloudFormation's short-form tags read as plain values."""


Loader.add_multi_constructor("!", lambda loader, suffix, node: None)

# The repository's limits (AWS Serverless Application Repository API, CreateApplication).
RULES = {
    "Name": (r"[a-zA-Z0-9-]{1,140}", "1-140 letters, digits and hyphens"),
    "Description": (r"(?s).{1,256}", "1-256 characters"),
    "Author": (r"[a-zA-Z0-9-]{1,127}", "1-127 letters, digits and hyphens"),
    "SemanticVersion": (r"\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?", "a semantic version"),
    "SpdxLicenseId": (r"[A-Za-z0-9.+-]+", "an SPDX license id"),
    "HomePageUrl": (r"https://\S+", "an https URL"),
    "SourceCodeUrl": (r"https://\S+", "an https URL"),
}
FILES = ("LicenseUrl", "ReadmeUrl")


def faults(release, version):
    with open(os.path.join(release, "template.yaml"), encoding="utf-8") as f:
        template = yaml.load(f, Loader=Loader)
    app = (template.get("Metadata") or {}).get("AWS::ServerlessRepo::Application")
    if not isinstance(app, dict):
        return ["no Metadata: AWS::ServerlessRepo::Application"]
    found = []
    for field, (pattern, what) in RULES.items():
        value = app.get(field)
        if not isinstance(value, str) or not re.fullmatch(pattern, value.strip()):
            found.append(f"{field} must be {what}: {value!r}")
    if app.get("SemanticVersion") != version:
        found.append(f"SemanticVersion {app.get('SemanticVersion')!r} is not the workspace's {version!r}")
    labels = app.get("Labels") or []
    if not 1 <= len(labels) <= 10 or not all(re.fullmatch(r"[a-zA-Z0-9+\-_:/@]{1,127}", str(l)) for l in labels):
        found.append(f"Labels must be 1-10 labels of 1-127 characters: {labels!r}")
    for field in FILES:
        path = os.path.join(release, str(app.get(field)))
        if not os.path.isfile(path) or os.path.getsize(path) == 0:
            found.append(f"{field} names {app.get(field)!r}, not a file of the release")
    return found + missing_artifacts(release, template)


def missing_artifacts(release, template):
    """The local files the template's resources name that the release lacks."""
    found = []
    for name, resource in (template.get("Resources") or {}).items():
        properties = (resource or {}).get("Properties") or {}
        for field in ("CodeUri", "DefinitionUri"):
            uri = properties.get(field)
            if isinstance(uri, str) and "://" not in uri and not os.path.isfile(os.path.join(release, uri)):
                found.append(f"{name}'s {field} {uri!r} is not a file of the release")
    return found


def main():
    release, version = sys.argv[1], sys.argv[2]
    found = faults(release, version)
    for f in found:
        print(f"[release] {f}", file=sys.stderr)
    if found:
        sys.exit(1)
    print("[release] every file the template names is in the release; the Serverless Application "
          "Repository metadata is complete")


if __name__ == "__main__":
    main()
