"""The release's template: template.yaml with each function's build step (the
`Metadata: BuildMethod: rust-cargolambda` block that `sam build` reads) replaced by a
`CodeUri` on its released zip, and the Globals' `CodeUri: .` (the source tree) gone, so
that `sam deploy` and `aws cloudformation package` upload the zips as they are.

A line-by-line rewrite, not a YAML round trip: the template's short-form tags (!Ref,
!Sub, !If) and comments stay as written. It fails, naming what, unless every
AWS::Serverless::Function gets exactly one of the named zips and every zip is used.

Usage: package_template.py SOURCE OUT FUNCTION...
"""
import re
import sys


def package(lines, functions):
    out, used = [], []
    i = 0
    globals_code_uri = 0
    while i < len(lines):
        line = lines[i]
        if line.rstrip() == "    CodeUri: .":
            globals_code_uri += 1
            i += 1
            continue
        if line.rstrip() == "    Metadata:" and i + 3 < len(lines) \
                and lines[i + 1].strip() == "BuildMethod: rust-cargolambda":
            if lines[i + 2].strip() != "BuildProperties:":
                raise SystemExit(f"line {i + 3}: expected BuildProperties")
            binary = re.fullmatch(r"\s+Binary: ([a-z-]+)\s*", lines[i + 3])
            if not binary or binary.group(1) not in functions:
                raise SystemExit(f"line {i + 4}: a binary not among {functions}: {lines[i + 3]!r}")
            if lines[i + 4].rstrip() != "    Properties:":
                raise SystemExit(f"line {i + 5}: expected the function's Properties")
            out.append(lines[i + 4])
            out.append(f"      CodeUri: functions/{binary.group(1)}.zip\n")
            used.append(binary.group(1))
            i += 5
            continue
        out.append(line)
        i += 1
    kinds = sum(1 for line in lines if line.strip() == "Type: AWS::Serverless::Function")
    if globals_code_uri != 1:
        raise SystemExit(f"expected one `CodeUri: .` in Globals, found {globals_code_uri}")
    if sorted(used) != sorted(functions) or kinds != len(used):
        raise SystemExit(f"{kinds} functions in the template, zips used {used}, released {functions}")
    return out


def main():
    source, target, functions = sys.argv[1], sys.argv[2], sys.argv[3:]
    with open(source, encoding="utf-8") as f:
        lines = f.readlines()
    with open(target, "w", encoding="utf-8") as f:
        f.writelines(package(lines, functions))


if __name__ == "__main__":
    main()
