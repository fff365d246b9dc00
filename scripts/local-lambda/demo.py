"""`make demo`: runs an example state machine from statemachines/ in moto, its task
done by the worker's real binaries on the local Lambda platform, a Job on the local
cluster; prints the execution's status, output and timeline. Exit 0 on SUCCEEDED."""
import argparse
import json
import sys
import time

import boto3


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--world", required=True)
    p.add_argument("--definition", default="statemachines/run-job.asl.json")
    p.add_argument("--timeout", type=int, default=180)
    args = p.parse_args()
    world = json.load(open(args.world))
    sfn = boto3.client("stepfunctions", endpoint_url=world["aws_endpoint"], region_name=world["region"],
                       aws_access_key_id=world["worker"]["access_key_id"], aws_secret_access_key=world["worker"]["secret_access_key"])
    definition = open(args.definition).read()
    definition = definition.replace("${RunJobFunctionArn}", world["functions"]["run-job"]).replace("${CallFunctionArn}", world["functions"]["call"])
    name = f"demo-{int(time.time())}"
    machine = sfn.create_state_machine(name=name, definition=definition, roleArn=world["states_role"])["stateMachineArn"]
    started = time.time()
    execution = sfn.start_execution(stateMachineArn=machine, name=name,
                                    input=json.dumps({"ClusterName": world["cluster"], "Namespace": world["namespace"]}))["executionArn"]
    print(f"execution {execution}")
    status = "RUNNING"
    while status == "RUNNING" and time.time() - started < args.timeout:
        time.sleep(0.5)
        d = sfn.describe_execution(executionArn=execution)
        status = d["status"]
    print(f"\nstatus: {status} after {time.time() - started:.1f} s")
    if d.get("output"):
        out = json.dumps(json.loads(d["output"]), indent=2)
        print("output:\n" + (out if len(out) < 4000 else out[:4000] + f"\n… ({len(out)} characters in all)"))
    if d.get("error"):
        print(f"error: {d['error']}\ncause: {d.get('cause')}")
    print("\ntimeline:")
    history = sfn.get_execution_history(executionArn=execution)["events"]
    t0 = history[0]["timestamp"] if history else None
    for e in history:
        details = next((v for k, v in e.items() if k.endswith("EventDetails")), {})
        what = details.get("name") or details.get("resource") or details.get("error") or ""
        print(f"  +{(e['timestamp'] - t0).total_seconds():6.2f} s  {e['type']:<24} {what}")
    if status == "RUNNING":
        print(f"\nthe execution did not finish within {args.timeout} s", file=sys.stderr)
    sys.exit(0 if status == "SUCCEEDED" else 1)


if __name__ == "__main__":
    main()
