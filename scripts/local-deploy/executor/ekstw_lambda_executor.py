"""A LocalStack Lambda runtime executor for `make deploy-local` (LAMBDA_RUNTIME_EXECUTOR=ekstw).

LocalStack runs a function's code in a Docker container with its runtime-init; this
machine has no Docker daemon. So an execution environment of a deployed function runs
the deployed code itself: the `bootstrap` of the zip the stack was deployed with (the
release's, `make release`), as LocalStack unpacked it, on the local Lambda platform's
runtime (scripts/local-lambda/lambda_platform.py: its Runtime API, its timeout kill).
A function whose architecture is not the host's (the release's arm64 on an x86_64 host)
runs under QEMU's user-mode emulator (`qemu-aarch64`, Debian's qemu-user, with the
arm64 C library of libc6-arm64-cross as its root: QEMU_LD_PREFIX), so what runs is the
very binary Lambda would run, only slower. The environment is the one LocalStack gives
the deployed function (the stack's settings, its AWS_ENDPOINT_URL), but for two things
the local cluster needs:

- EKS is served by the local world's moto (LocalStack's community edition has none):
  AWS_ENDPOINT_URL_EKS;
- the credentials are the world's worker user (the local API server's authenticator
  verifies tokens against moto's IAM, which knows no LocalStack role).

Environment of the LocalStack process: EKSTW_WORLD (world.json), EKSTW_LOGS (the
processes' logs), EKSTW_QEMU_AARCH64 (the emulator, default `qemu-aarch64` on PATH) and
EKSTW_QEMU_LD_PREFIX (default /usr/aarch64-linux-gnu).

One LocalStack patch, made when this plugin loads: a task answered while its
`lambda:invoke.waitForTaskToken` invocation still runs (run-job answers a short Job
inline, before its invocation returns) was never seen by a state with `HeartbeatSeconds`
(the answer notifies the heartbeat watch, which is only set up once the invocation has
returned, so the state waited for a heartbeat until it timed out); AWS takes the answer,
and so does LocalStack with the patch.
"""
import json
import logging
import os
import platform
import shutil
import sys

from localstack.services.lambda_.invocation.lambda_models import InvocationResult
from localstack.services.lambda_.invocation.plugins import RuntimeExecutorPlugin
from localstack.services.lambda_.invocation.runtime_executor import RuntimeExecutor

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "local-lambda"))
sys.path.insert(0, os.path.join(HERE, "..", "..", "local-world"))


def _an_early_answer_reaches_the_heartbeat_watch():
    from localstack.services.stepfunctions.asl.eval.callback import callback

    original = callback.CallbackEndpoint.setup_heartbeat_endpoint

    def setup_heartbeat_endpoint(self, heartbeat_seconds):
        endpoint = original(self, heartbeat_seconds=heartbeat_seconds)
        if self.get_outcome() is not None:
            endpoint.notify()
        return endpoint

    callback.CallbackEndpoint.setup_heartbeat_endpoint = setup_heartbeat_endpoint


_an_early_answer_reaches_the_heartbeat_watch()


class EksTaskWorkerExecutor(RuntimeExecutor):
    function = None

    def command(self):
        """The deployed bootstrap's command line: itself, or under QEMU when the
        function's architecture is not the host's."""
        code = self.function_version.config.code
        bootstrap = os.path.join(str(code.get_unzipped_code_location()), "bootstrap")
        if not os.access(bootstrap, os.X_OK):
            raise RuntimeError(f"the deployed code of {self.function_version.id.function_name} has no "
                               f"executable bootstrap at {bootstrap}")
        wanted = (self.function_version.config.architectures or ["x86_64"])[0]
        host = {"aarch64": "arm64", "arm64": "arm64"}.get(platform.machine(), "x86_64")
        if wanted == host:
            return [bootstrap]
        if wanted != "arm64":
            raise RuntimeError(f"a {wanted} function cannot run on this {host} host")
        qemu = shutil.which(os.environ.get("EKSTW_QEMU_AARCH64", "qemu-aarch64"))
        if qemu is None:
            raise RuntimeError("an arm64 function on an x86_64 host needs qemu-aarch64: "
                               "apt-get install qemu-user libc6-arm64-cross")
        return [qemu, "-L", os.environ.get("EKSTW_QEMU_LD_PREFIX", "/usr/aarch64-linux-gnu"), bootstrap]

    def start(self, env_vars):
        import lambda_platform

        world = json.load(open(os.environ["EKSTW_WORLD"]))
        env = {k: str(v) for k, v in env_vars.items()}
        env.update({"AWS_ENDPOINT_URL_EKS": world["aws_endpoint"],
                    "AWS_ACCESS_KEY_ID": world["worker"]["access_key_id"],
                    "AWS_SECRET_ACCESS_KEY": world["worker"]["secret_access_key"]})
        env.pop("AWS_SESSION_TOKEN", None)
        config = self.function_version.config
        name = self.function_version.id.function_name
        logs = os.environ.get("EKSTW_LOGS", "/tmp")
        os.makedirs(logs, exist_ok=True)
        command = self.command()
        logging.getLogger("ekstw.executor").warning("%s runs its deployed code: %s", name, " ".join(command))
        self.function = lambda_platform.Function(
            name, self.function_version.id.unqualified_arn(), command, env,
            {"timeout": int(config.timeout), "memory": int(config.memory_size)}, 1, logs, lambda fn, inv: None)

    def stop(self):
        if self.function is not None:
            self.function.stop()

    def get_address(self):
        return "127.0.0.1"

    def get_endpoint_from_executor(self):
        return "127.0.0.1"

    def get_runtime_endpoint(self):
        return "http://127.0.0.1"

    def invoke(self, payload):
        import lambda_platform

        inv = self.function.invoke(json.loads(payload["payload"] or "null"), lambda_platform.SYNC)
        inv.done.wait(self.function.timeout + 10)
        failed = inv.error is not None or not inv.done.is_set()
        body = inv.error if inv.error is not None else inv.result
        if not inv.done.is_set():
            body = {"errorType": "Sandbox.Timedout", "errorMessage": "the function never answered"}
        return InvocationResult(request_id=payload["invoke-id"], payload=json.dumps(body).encode(),
                                is_error=failed, logs="")

    def get_logs(self):
        return ""

    @classmethod
    def prepare_version(cls, function_version):
        if function_version.config.code:
            function_version.config.code.prepare_for_execution()

    @classmethod
    def cleanup_version(cls, function_version):
        pass


class EksTaskWorkerExecutorPlugin(RuntimeExecutorPlugin):
    name = "ekstw"

    def load(self, *args, **kwargs):
        return EksTaskWorkerExecutor
