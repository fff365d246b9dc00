"""make test, after the world tests: each function's IAM role, as template.yaml grants it,
against the AWS actions its binary made in those tests (the local Lambda platform's
journal, logs/aws-calls.jsonl). Fails on an action used but not granted (an
AccessDenied in production), and on one granted but never used (a privilege a bug
could use), but for those in UNREACHED, each with why the local world cannot show it.

Every condition of the template counts as on (the world runs every feature), and calls
made with credentials the function assumed (a payload's RoleArn) are that role's, not
the function's. The actions a request implies are counted with it: iam:PassRole for a
role it passes, s3:PutObject for every part of a multipart upload.

Usage: iam_check.py --template template.yaml --journal .local-world/logs/aws-calls.jsonl
"""
import argparse
import fnmatch
import json
import os
import sys

import samtranslator

from lambda_platform import load_template

# S3 operations and the IAM action each is authorised by.
S3_ACTIONS = {
    "PutObject": "s3:PutObject", "CreateMultipartUpload": "s3:PutObject", "UploadPart": "s3:PutObject",
    "CompleteMultipartUpload": "s3:PutObject", "AbortMultipartUpload": "s3:AbortMultipartUpload",
    "GetObject": "s3:GetObject", "HeadObject": "s3:GetObject", "ListObjectsV2": "s3:ListBucket",
}
# Operations no IAM permission governs.
UNGOVERNED = {("sts", "GetCallerIdentity")}
# Granted, and used in production, but never by a request the local world can see:
# (function, or "*" for every one, action) and why.
FORCED_DELETE = ("a forced delete (ForceDeleteCompute) the poller carries on once the compute's deletions "
                 "outlast cluster-ops' 20 s: moto deletes at once, so cluster-ops finishes it inline")
SLOW_COMPUTE = ("a nodegroup or Fargate profile still CREATING after cluster-ops' 20 s, followed by the "
                "poller: moto's are ACTIVE at once")
SAME_ARCHIVE = ("an archive upload that fails is aborted: the same code (task::logs::archive) as run-job's, "
                "whose abort the cell archive-aborted shows")
UNREACHED = {
    ("*", "iam:CreateServiceLinkedRole"): "EKS creates its service-linked roles with the caller's rights when "
                                          "the account's first cluster, nodegroup or Fargate profile is created; "
                                          "the code never calls it, and moto's EKS does not either",
    ("poller", "sqs:SendMessage*"): "Lambda sends a failed asynchronous invocation (a poll) to the on-failure "
                                    "destination with the function's role; the local platform writes dead "
                                    "letters to a file",
    ("poller", "s3:AbortMultipartUpload"): SAME_ARCHIVE,
    ("activity", "s3:AbortMultipartUpload"): SAME_ARCHIVE,
    ("poller", "sts:AssumeRole"): "a Job of a payload with RoleArn that outlives the inline wait: the cells "
                                  "that assume roles (credentials-expiry, e2e's call_refused) end inline",
    ("poller", "eks:DescribeNodegroup"): SLOW_COMPUTE,
    ("poller", "eks:DescribeFargateProfile"): SLOW_COMPUTE,
    ("poller", "eks:ListNodegroups"): FORCED_DELETE,
    ("poller", "eks:ListFargateProfiles"): FORCED_DELETE,
    ("poller", "eks:DeleteNodegroup"): FORCED_DELETE,
    ("poller", "eks:DeleteFargateProfile"): FORCED_DELETE,
    ("poller", "eks:DeleteCluster"): FORCED_DELETE,
    ("poller", "eks:DescribeAccessEntry"): "an access entry already there (409) when the poller lets the "
                                           "worker into a cluster that became ACTIVE",
    ("cluster-ops", "eks:DescribeAccessEntry"): "an access entry already there (409) when cluster-ops lets the "
                                                "worker in: the local world's clusters hold none beforehand",
    ("activity", "scheduler:CreateSchedule"): "an activity's Job handed to the poller: locally the poller answers "
                                              "moto's Step Functions, while the activity's token is LocalStack's",
    ("activity", "iam:PassRole"): "the Scheduler role passed with that hand-off",
    ("activity", "kms:GenerateMac"): "the seal of that hand-off's poll state",
    ("activity", "scheduler:GetSchedule"): "that hand-off meeting its next poll's name taken",
    ("activity", "kms:VerifyMac"): "the seal of the schedule read back at a taken name, in that hand-off",
    ("cluster-ops", "scheduler:GetSchedule"): "a cluster operation's hand-off meeting its poll's name taken: "
                                              "no test delivers a cluster-ops task twice, nor squats its "
                                              "first poll (its key is the poller's, which forgeries.rs squats)",
    ("cluster-ops", "kms:VerifyMac"): "the seal of the schedule read back at that taken name",
}


def unreached(function, action):
    return UNREACHED.get((function, action)) or UNREACHED.get(("*", action))


def iam_action(entry):
    service, operation = entry["service"], entry["operation"]
    if operation is None or (service, operation) in UNGOVERNED:
        return None
    if service == "s3":
        return S3_ACTIONS.get(operation, f"s3:{operation}")
    return f"{service}:{operation}"


def used_actions(journal, problems):
    used = {}
    with open(journal) as f:
        for line in f:
            entry = json.loads(line)
            if not entry["own_credentials"]:
                continue
            if entry["operation"] is None:
                problems.append(f"{entry['function']}: a {entry['service']} request the check cannot name "
                                f"({entry['request']}): extend aws_journal.operation")
                continue
            actions = [iam_action(entry)] + ["iam:PassRole"] * bool(entry["passes"])
            for action in filter(None, actions):
                used.setdefault(entry["function"], {}).setdefault(action, entry["request"])
    return used


def policy_templates():
    path = os.path.join(os.path.dirname(samtranslator.__file__), "policy_templates_data", "policy_templates.json")
    with open(path) as f:
        return json.load(f)["Templates"]


def on(value):
    """A value with every `!If` taken as true; None for AWS::NoValue."""
    if isinstance(value, dict) and "!If" in value:
        return on(value["!If"][1])
    if value == {"!Ref": "AWS::NoValue"}:
        return None
    return value


def statements(policy, resources, templates):
    policy = on(policy)
    if policy is None:
        return []
    if isinstance(policy, dict) and "!Ref" in policy:
        return statements(resources[policy["!Ref"]]["Properties"]["PolicyDocument"], resources, templates)
    if isinstance(policy, dict) and "Statement" in policy:
        return [s for s in map(on, policy["Statement"]) if s is not None]
    if isinstance(policy, dict) and len(policy) == 1 and next(iter(policy)) in templates:
        return templates[next(iter(policy))]["Definition"]["Statement"]
    raise SystemExit(f"iam_check: a policy of a form it does not read: {policy}")


def granted_actions(template):
    resources, templates = template["Resources"], policy_templates()
    granted = {}
    for resource in resources.values():
        if resource.get("Type") != "AWS::Serverless::Function":
            continue
        function = resource["Metadata"]["BuildProperties"]["Binary"]
        for policy in resource["Properties"].get("Policies", []):
            for statement in statements(policy, resources, templates):
                if statement.get("Effect") != "Allow":
                    continue
                actions = statement["Action"]
                for action in [actions] if isinstance(actions, str) else actions:
                    granted.setdefault(function, set()).add(action)
    return granted


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--template", required=True)
    p.add_argument("--journal", required=True)
    args = p.parse_args()
    if not os.path.exists(args.journal):
        sys.exit(f"iam_check: no journal at {args.journal}: run the world tests first (make test)")
    problems = []
    used, granted = used_actions(args.journal, problems), granted_actions(load_template(args.template))
    for function in sorted(granted):
        mine, grants = used.get(function, {}), granted[function]
        for action, request in sorted(mine.items()):
            if not any(fnmatch.fnmatchcase(action, g) for g in grants):
                problems.append(f"{function}: uses {action} ({request}), which its role is not granted")
        for grant in sorted(grants):
            if not unreached(function, grant) and not any(fnmatch.fnmatchcase(a, grant) for a in mine):
                problems.append(f"{function}: is granted {grant}, which it never used")
        print(f"iam_check: {function}: {len(mine)} action(s) used, {len(grants)} granted")
    for (function, action), why in sorted(UNREACHED.items()):
        functions = sorted(granted) if function == "*" else [function]
        if function != "*" and action not in granted.get(function, set()):
            problems.append(f"UNREACHED names {action} for {function}, which its role is not granted: remove it")
        for f in functions:
            if any(fnmatch.fnmatchcase(a, action) for a in used.get(f, {})):
                problems.append(f"UNREACHED names {action} for {f}, which the tests reach: remove it")
    for function in sorted(set(used) - set(granted)):
        problems.append(f"{function}: made AWS calls but is not a function of the template")
    for problem in problems:
        print(f"iam_check: {problem}", file=sys.stderr)
    if problems:
        sys.exit(1)
    print(f"iam_check: every function's role grants exactly what its binary used, but {len(UNREACHED)} "
          "grants no local path reaches (UNREACHED in scripts/local-lambda/iam_check.py, each with why)")


if __name__ == "__main__":
    main()
