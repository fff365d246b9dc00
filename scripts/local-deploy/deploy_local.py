"""make deploy-local, once LocalStack (CloudFormation and the services the stack uses)
listens on --endpoint: `sam deploy` (the real SAM CLI, on the release's packaged
template and zips, `make release`) creates
the stack with every optional part switched on; then each resource the stack says it
created is looked up in its service, and the example state machine runs its Job through
the worker's binaries on the local cluster. Exits 1 unless the stack is CREATE_COMPLETE,
every resource it reports is there (but for the EMULATOR_GAPS, named) and the execution
SUCCEEDED.

Usage: deploy_local.py --endpoint URL --world world.json --sam PATH --template PATH [--stack NAME]
"""
import argparse
import json
import os
import subprocess
import sys
import time

import boto3

REGION = "us-east-1"
ACCOUNT = "000000000000"
# What LocalStack reports complete without making, and why: named in the run's report
# and the README, the only resources that may be missing for the run to pass.
EMULATOR_GAPS = {"AWS::CloudWatch::Dashboard": "LocalStack has no provider for it and reports it "
                                               "CREATE_COMPLETE without creating it"}


def say(message):
    print(f"[deploy-local {time.strftime('%H:%M:%S')}] {message}", flush=True)


def exists(clients, resource, resources):
    """Whether the service holds the resource the stack says it made: (bool, what)."""
    kind, physical = resource["ResourceType"], resource.get("PhysicalResourceId", "")
    c = clients
    try:
        if kind == "AWS::Lambda::Function":
            state = c("lambda").get_function(FunctionName=physical)["Configuration"]["State"]
            return state == "Active", f"state {state}"
        if kind == "AWS::Lambda::EventInvokeConfig":
            # Its physical id is LocalStack's own; the config is looked up on the function
            # the template gives it (<logical id of the function>EventInvokeConfig).
            function = next(r for r in resources if r["LogicalResourceId"] + "EventInvokeConfig" == resource["LogicalResourceId"])
            cfg = c("lambda").get_function_event_invoke_config(FunctionName=function["PhysicalResourceId"])
            destination = cfg.get("DestinationConfig", {}).get("OnFailure", {}).get("Destination")
            return bool(destination), f"on-failure destination {destination}"
        if kind == "AWS::StepFunctions::StateMachine":
            return c("stepfunctions").describe_state_machine(stateMachineArn=physical)["status"] == "ACTIVE", "ACTIVE"
        if kind == "AWS::IAM::Role":
            c("iam").get_role(RoleName=physical)
            return True, "role"
        if kind == "AWS::IAM::ManagedPolicy":
            c("iam").get_policy(PolicyArn=physical)
            return True, "policy"
        if kind == "AWS::SQS::Queue":
            c("sqs").get_queue_attributes(QueueUrl=physical, AttributeNames=["QueueArn"])
            return True, "queue"
        if kind == "AWS::Logs::LogGroup":
            groups = [g for g in c("logs").describe_log_groups(logGroupNamePrefix=physical)["logGroups"]
                      if g["logGroupName"] == physical]
            retention = groups[0].get("retentionInDays") if groups else None
            return bool(groups), f"log group, retention {retention or 'none (LocalStack ignores RetentionInDays)'}"
        if kind == "AWS::Scheduler::ScheduleGroup":
            c("scheduler").get_schedule_group(Name=physical)
            return True, "schedule group"
        if kind == "AWS::Scheduler::Schedule":
            c("scheduler").get_schedule(Name=physical)
            return True, "schedule"
        if kind == "AWS::KMS::Key":
            meta = c("kms").describe_key(KeyId=physical)["KeyMetadata"]
            return meta.get("KeySpec") == "HMAC_256" and meta.get("KeyUsage") == "GENERATE_VERIFY_MAC", \
                f"KMS key {meta.get('KeySpec')} {meta.get('KeyUsage')}"
        if kind == "AWS::CloudWatch::Alarm":
            return bool(c("cloudwatch").describe_alarms(AlarmNames=[physical])["MetricAlarms"]), "alarm"
        if kind == "AWS::CloudWatch::Dashboard":
            names = [d["DashboardName"] for d in c("cloudwatch").list_dashboards()["DashboardEntries"]]
            return physical in names, f"dashboard {physical!r} among {names}"
    except Exception as e:  # noqa: BLE001 - reported as not created
        return False, f"{type(e).__name__}: {e}"
    return False, "no check for this type"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--endpoint", required=True)
    p.add_argument("--world", required=True)
    p.add_argument("--sam", required=True)
    p.add_argument("--template", required=True, help="the release's template.yaml")
    p.add_argument("--stack", default="ekstw-local")
    args = p.parse_args()
    world = json.load(open(args.world))
    env = dict(os.environ, AWS_ENDPOINT_URL=args.endpoint, AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test",
               AWS_DEFAULT_REGION=REGION, AWS_REGION=REGION, SAM_CLI_TELEMETRY="0")
    kw = dict(region_name=REGION, endpoint_url=args.endpoint, aws_access_key_id="test", aws_secret_access_key="test")
    made = {}

    def clients(service):
        if service not in made:
            made[service] = boto3.client(service, **kw)
        return made[service]

    bucket = f"{args.stack}-logs"
    clients("s3").create_bucket(Bucket=bucket)
    activity = clients("stepfunctions").create_activity(name=f"{args.stack}-run-job")["activityArn"]
    overrides = {
        "PassableRoleArns": world["states_role"].replace("eks-task-worker-states", "eks-task-worker-cluster"),
        "AssumableRoleArns": f"arn:aws:iam::{ACCOUNT}:role/{args.stack}-cross-account",
        "ActivityArns": f"run-job={activity}",
        "LogArchiveBucket": bucket,
        "MetricsDashboardAndAlarms": "true",
        "DeployExamples": "true",
        "AlarmTopicArn": f"arn:aws:sns:{REGION}:{ACCOUNT}:{args.stack}-alarms",
    }
    say(f"sam deploy --stack-name {args.stack} (every optional part on: {', '.join(overrides)})")
    deploy = subprocess.run([args.sam, "deploy", "--template-file", args.template, "--stack-name", args.stack, "--resolve-s3", "--capabilities", "CAPABILITY_IAM",
                             "--no-confirm-changeset", "--no-fail-on-empty-changeset", "--region", REGION,
                             "--parameter-overrides", *[f"{k}={v}" for k, v in overrides.items()]], env=env)
    cfn = clients("cloudformation")
    try:
        stack = cfn.describe_stacks(StackName=args.stack)["Stacks"][0]
    except cfn.exceptions.ClientError as e:
        say(f"FAILED: no stack {args.stack} after sam deploy (exited {deploy.returncode}): {e}")
        sys.exit(1)
    say(f"stack {args.stack}: {stack['StackStatus']} (sam deploy exited {deploy.returncode})")
    failures = []
    if stack["StackStatus"] != "CREATE_COMPLETE":
        for e in cfn.describe_stack_events(StackName=args.stack)["StackEvents"]:
            if e["ResourceStatus"].endswith("FAILED"):
                say(f"  {e['LogicalResourceId']} ({e['ResourceType']}): {e.get('ResourceStatusReason')}")
        failures.append(f"the stack is {stack['StackStatus']}")
    resources = cfn.list_stack_resources(StackName=args.stack)["StackResourceSummaries"]
    not_created = []
    for r in sorted(resources, key=lambda r: (r["ResourceType"], r["LogicalResourceId"])):
        ok, what = exists(clients, r, resources)
        say(f"  {'created    ' if ok else 'NOT CREATED'} {r['ResourceType']:<36} {r['LogicalResourceId']} ({what})")
        if not ok:
            not_created.append(f"{r['LogicalResourceId']} ({r['ResourceType']}: {what})")
            if r["ResourceType"] not in EMULATOR_GAPS:
                failures.append(f"{r['LogicalResourceId']} ({r['ResourceType']}) reported complete, not created")
    say(f"{len(resources) - len(not_created)} of {len(resources)} resources created")

    sfn = clients("stepfunctions")
    machine = f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:{args.stack}-example-run-job"
    execution = sfn.start_execution(stateMachineArn=machine, input=json.dumps(
        {"ClusterName": world["cluster"], "Namespace": world["namespace"]}))["executionArn"]
    say(f"example {args.stack}-example-run-job: execution started")
    deadline = time.time() + 300
    while True:
        d = sfn.describe_execution(executionArn=execution)
        if d["status"] != "RUNNING" or time.time() > deadline:
            break
        time.sleep(1)
    say(f"example: {d['status']}")
    if d["status"] != "SUCCEEDED":
        failures.append(f"the example execution is {d['status']}: {d.get('error')} {d.get('cause', '')[:500]}")
    else:
        output = json.loads(d.get("output") or "{}")
        pods = output.get("logs", {}).get("pods", {})
        say(f"example output: status {json.dumps(output.get('status', {}))[:200]}; logs of {len(pods)} pod(s): "
            f"{json.dumps(pods)[:300]}")
    if not_created:
        say("reported complete without being created: " + "; ".join(not_created))
        for kind, why in EMULATOR_GAPS.items():
            say(f"  known emulator gap, {kind}: {why}")
    for f in failures:
        say(f"FAILED: {f}")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
