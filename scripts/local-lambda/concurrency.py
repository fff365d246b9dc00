"""Lambda's concurrency limits, as the platform keeps them.

A function with reserved concurrency runs at most that many invocations at once; every
other function shares the account's unreserved concurrency (the account limit, 1,000 by
default, less every reservation). An invocation holds one unit from when Lambda accepts
it to run until it ends:

- a synchronous invocation (Step Functions') that finds no unit free is refused at once:
  Step Functions fails the task with `Lambda.TooManyRequestsException`, which a state's
  `Retry` may catch;
- an asynchronous one (Scheduler's) is kept in Lambda's queue and started when a unit
  is free, as Lambda's internal poller does (its throttles are retried, not lost).

The machine's own bound is apart from this: a function runs no more processes than the
platform gave it (`--concurrency`); an invocation that holds a unit but finds every
process busy waits for one, and the invocation log shows that wait (queued to started).
"""
import threading

THROTTLED = "Lambda.TooManyRequestsException"


class Concurrency:
    """The units in use, per function and for the account's unreserved pool."""

    def __init__(self, account_limit, reserved):
        """`reserved`: {function: units} for the functions with reserved concurrency."""
        self.lock = threading.Lock()
        self.reserved = dict(reserved)
        self.unreserved = account_limit - sum(self.reserved.values())
        if self.unreserved < 0:
            raise ValueError(f"reservations ({sum(self.reserved.values())}) exceed the account limit ({account_limit})")
        self.in_use = {}
        self.unreserved_in_use = 0
        self.throttles = {}

    def limit(self, name):
        return self.reserved.get(name, self.unreserved)

    def acquire(self, name, held=False):
        """Takes a unit for one invocation of `name`; False when none is free (a throttle,
        unless `held`: an asynchronous event Lambda keeps waiting is not throttled
        again at every look)."""
        with self.lock:
            used = self.in_use.get(name, 0)
            if name in self.reserved:
                free = used < self.reserved[name]
            else:
                free = self.unreserved_in_use < self.unreserved
            if not free:
                if not held:
                    self.throttles[name] = self.throttles.get(name, 0) + 1
                return False
            self.in_use[name] = used + 1
            if name not in self.reserved:
                self.unreserved_in_use += 1
            return True

    def release(self, name):
        with self.lock:
            self.in_use[name] -= 1
            if name not in self.reserved:
                self.unreserved_in_use -= 1

    def describe(self):
        """What the state file says of it."""
        return {"account_unreserved": self.unreserved, "reserved": self.reserved}
