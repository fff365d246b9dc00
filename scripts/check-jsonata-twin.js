#!/usr/bin/env node
// make lint: a JSONata example says what its JSONPath twin says. For every Task state of
// both definitions, with the same input, context, result and error, the payload the
// function gets (Parameters / Arguments), the state's output (ResultSelector /
// Output) and each Catch's output (ResultPath / Output) must be equal. The JSONata side
// is evaluated by the jsonata package (the language Step Functions implements); the
// JSONPath side by the few path forms the examples use ("$.a.b", "$$.a.b").
// Usage: check-jsonata-twin.js JSONPATH.asl.json JSONATA.asl.json
"use strict";
const fs = require("fs");
const assert = require("assert");
const jsonata = require("jsonata");

const [jsonPathFile, jsonataFile] = process.argv.slice(2);
if (!jsonPathFile || !jsonataFile) {
  console.error("usage: check-jsonata-twin.js JSONPATH.asl.json JSONATA.asl.json");
  process.exit(2);
}
const twin = JSON.parse(fs.readFileSync(jsonPathFile, "utf8"));
const own = JSON.parse(fs.readFileSync(jsonataFile, "utf8"));
if (own.QueryLanguage !== "JSONata") throw new Error(`${jsonataFile}: QueryLanguage is not JSONata`);

const input = { ClusterName: "cluster-1", Namespace: "jobs", Extra: { kept: true } };
const context = { Execution: { Id: "arn:aws:states:us-east-1:123456789012:execution:m:e" }, Task: { Token: "token-1" } };
const result = { status: { succeeded: 1 }, logs: { pods: { p: { c: "3.14" } } }, metadata: { name: "example-job-x" } };
const errorOutput = { Error: "EksTaskWorker.JobFailed", Cause: "{\"reason\":\"BackoffLimitExceeded\"}" };

function path(expr, data, ctx) {
  const [root, rest] = expr.startsWith("$$") ? [ctx, expr.slice(2)] : [data, expr.slice(1)];
  if (rest === "") return root;
  if (!/^(\.[A-Za-z0-9_]+)+$/.test(rest)) throw new Error(`path form not handled here: ${expr}`);
  return rest.slice(1).split(".").reduce((v, k) => (v === undefined ? undefined : v[k]), root);
}

function template(node, data, ctx) {
  if (Array.isArray(node)) return node.map((n) => template(n, data, ctx));
  if (node === null || typeof node !== "object") return node;
  const out = {};
  for (const [k, v] of Object.entries(node)) {
    if (k.endsWith(".$")) out[k.slice(0, -2)] = path(v, data, ctx);
    else out[k] = template(v, data, ctx);
  }
  return out;
}

function withResult(data, resultPath, value) {
  if (resultPath === undefined || resultPath === "$") return value;
  if (resultPath === null) return data;
  const keys = resultPath.slice(2).split(".");
  const out = structuredClone(data);
  let at = out;
  for (const k of keys.slice(0, -1)) at = at[k] = at[k] ?? {};
  at[keys[keys.length - 1]] = value;
  return out;
}

async function evaluate(node, states) {
  if (Array.isArray(node)) return Promise.all(node.map((n) => evaluate(n, states)));
  if (typeof node === "string") {
    const m = /^\{%(.*)%\}$/s.exec(node);
    // JSON round trip: as Step Functions hands the value on (jsonata builds objects
    // without a prototype).
    return m ? JSON.parse(JSON.stringify(await jsonata(m[1]).evaluate({}, { states }) ?? null)) : node;
  }
  if (node === null || typeof node !== "object") return node;
  const out = {};
  for (const [k, v] of Object.entries(node)) out[k] = await evaluate(v, states);
  return out;
}

async function main() {
  let compared = 0;
  for (const [name, a] of Object.entries(twin.States)) {
    const b = own.States[name];
    if (!b) throw new Error(`${jsonataFile}: no state ${JSON.stringify(name)} beside ${jsonPathFile}'s`);
    assert.strictEqual(b.Type, a.Type, `${name}: Type`);
    for (const key of ["Resource", "Retry", "TimeoutSeconds", "HeartbeatSeconds", "Next", "End", "Error", "Cause"]) {
      assert.deepStrictEqual(b[key], a[key], `${name}: ${key}`);
    }
    if (a.Type !== "Task") continue;
    const states = { input, context, result };
    assert.deepStrictEqual(await evaluate(b.Arguments, states), template(a.Parameters, input, context), `${name}: the payload`);
    const selected = a.ResultSelector ? template(a.ResultSelector, result, context) : result;
    const expected = withResult(input, a.ResultPath, selected);
    const got = b.Output === undefined ? result : await evaluate(b.Output, states);
    assert.deepStrictEqual(got, expected, `${name}: the output`);
    assert.strictEqual((b.Catch || []).length, (a.Catch || []).length, `${name}: Catch`);
    for (const [i, c] of (a.Catch || []).entries()) {
      const d = b.Catch[i];
      assert.deepStrictEqual(d.ErrorEquals, c.ErrorEquals, `${name}: Catch[${i}].ErrorEquals`);
      assert.strictEqual(d.Next, c.Next, `${name}: Catch[${i}].Next`);
      const caught = await evaluate(d.Output, { input, context, errorOutput });
      assert.deepStrictEqual(caught, withResult(input, c.ResultPath, errorOutput), `${name}: Catch[${i}]'s output`);
    }
    compared += 1;
  }
  if (compared === 0) throw new Error("no Task state compared");
  console.log(`${jsonataFile}: ${compared} task state(s) say what ${jsonPathFile}'s say`);
}

main().catch((e) => {
  console.error(`check-jsonata-twin: ${e.message}`);
  process.exit(1);
});
