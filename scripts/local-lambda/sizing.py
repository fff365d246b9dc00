"""How Lambda sizes an execution environment, made here with Linux cgroups (v1).

Lambda gives a function CPU in proportion to its memory (one vCPU at 1,769 MB: about a
seventh of a core at 256 MB) and ends a process that goes past its memory. Each process
of the platform (one execution environment) gets cgroups of its own:

- `cpu`: a CFS quota of MemorySize / 1,769 of one core in every 100 ms period;
- `memory`: a limit of MemorySize MiB (and the same for memory plus swap, where the
  kernel counts swap: Lambda has none). A process past it is killed by the kernel, and
  the platform reports the invocation it held as Lambda does, `Runtime.OutOfMemory`.

A process is placed before it runs its first instruction: it starts as `sh`, writes its
own PID into its cgroups, then execs the function's binary.

Where the cgroup hierarchies cannot be written (no cgroups v1 `cpu` or `memory`
hierarchy, not root), functions run unsized and the platform says so when it starts and
in its state file (`sizing`), which the benchmarks print beside every figure.

Own code rather than a library: the cgroups v1 files are four writes and two reads, and
the Python cgroup libraries on PyPI are unmaintained or systemd-bound.
"""
import logging
import os

log = logging.getLogger("lambda-platform")

ROOT = "/sys/fs/cgroup"
PERIOD_US = 100_000
# AWS: "at 1,769 MB, a function has the equivalent of one vCPU".
MB_PER_VCPU = 1769


def cpu_quota_us(memory_mb):
    """The CFS quota in every 100 ms period for a function of `memory_mb`."""
    return max(1000, round(PERIOD_US * memory_mb / MB_PER_VCPU))


class Sizing:
    """The platform's cgroups: one folder per platform under each hierarchy, one per
    process below it. `Sizing(False)` (or a machine where they cannot be made) sizes
    nothing and says why."""

    def __init__(self, wanted=True):
        self.base = {h: os.path.join(ROOT, h, f"ekstw-lambda-{os.getpid()}") for h in ("cpu", "memory")}
        self.why_not = None if wanted else "asked not to (--unsized)"
        self.oom_seen = {}
        if self.why_not is None:
            try:
                for path in self.base.values():
                    os.makedirs(path, exist_ok=True)
                # Probe the files we write, not only the folders.
                with open(os.path.join(self.base["cpu"], "cpu.cfs_quota_us"), "w") as f:
                    f.write("-1")
                with open(os.path.join(self.base["memory"], "memory.limit_in_bytes"), "w") as f:
                    f.write("-1")
            except OSError as e:
                self.why_not = f"the cgroup hierarchies under {ROOT} cannot be written here ({e})"
                self.remove()
        if self.why_not:
            log.warning("functions run UNSIZED (whole cores, no memory limit): %s", self.why_not)

    @property
    def enabled(self):
        return self.why_not is None

    def describe(self):
        """What the state file says of it."""
        if not self.enabled:
            return {"sized": False, "why": self.why_not}
        return {"sized": True, "cpu_period_us": PERIOD_US, "mb_per_vcpu": MB_PER_VCPU}

    def group(self, hierarchy, name):
        return os.path.join(self.base[hierarchy], name)

    def prepare(self, name, memory_mb):
        """Makes (or resets) the cgroups of process `name` for a function of
        `memory_mb`; returns the command prefix that places a process in them, or [] when
        unsized."""
        if not self.enabled:
            return []
        cpu, mem = self.group("cpu", name), self.group("memory", name)
        os.makedirs(cpu, exist_ok=True)
        os.makedirs(mem, exist_ok=True)
        with open(os.path.join(cpu, "cpu.cfs_period_us"), "w") as f:
            f.write(str(PERIOD_US))
        with open(os.path.join(cpu, "cpu.cfs_quota_us"), "w") as f:
            f.write(str(cpu_quota_us(memory_mb)))
        limit = memory_mb * 1024 * 1024
        with open(os.path.join(mem, "memory.limit_in_bytes"), "w") as f:
            f.write(str(limit))
        memsw = os.path.join(mem, "memory.memsw.limit_in_bytes")
        if os.path.exists(memsw):
            with open(memsw, "w") as f:
                f.write(str(limit))
        # Lambda's "Max Memory Used" is the environment's: counted from this process on.
        with open(os.path.join(mem, "memory.max_usage_in_bytes"), "w") as f:
            f.write("0")
        self.oom_seen[name] = self.oom_kills(name)
        procs = [os.path.join(cpu, "cgroup.procs"), os.path.join(mem, "cgroup.procs")]
        # $0 is the binary, "$@" its arguments: the shell becomes the function's process.
        return ["/bin/sh", "-c", f'echo $$ > {procs[0]} && echo $$ > {procs[1]} && exec "$0" "$@"']

    def oom_kills(self, name):
        """How many processes the kernel has killed in `name`'s memory cgroup."""
        if not self.enabled:
            return 0
        try:
            with open(os.path.join(self.group("memory", name), "memory.oom_control")) as f:
                for line in f:
                    key, _, value = line.partition(" ")
                    if key == "oom_kill":
                        return int(value)
        except OSError:
            pass
        return 0

    def killed_at_limit(self, name):
        """Whether `name`'s process was killed at its memory limit since it was placed."""
        return self.oom_kills(name) > self.oom_seen.get(name, 0)

    def peak_mb(self, name):
        """The most memory `name`'s cgroup has held since its process was placed (Lambda's
        "Max Memory Used"), or None when unsized."""
        if not self.enabled:
            return None
        try:
            with open(os.path.join(self.group("memory", name), "memory.max_usage_in_bytes")) as f:
                return int(f.read()) / (1024 * 1024)
        except OSError:
            return None

    def remove(self):
        """Removes the platform's cgroups (their processes must have ended)."""
        for path in self.base.values():
            if not os.path.isdir(path):
                continue
            for child in sorted(os.listdir(path)):
                sub = os.path.join(path, child)
                if os.path.isdir(sub):
                    try:
                        os.rmdir(sub)
                    except OSError as e:
                        log.warning("cgroup %s not removed: %s", sub, e)
            try:
                os.rmdir(path)
            except OSError as e:
                log.warning("cgroup %s not removed: %s", path, e)
