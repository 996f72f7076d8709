"""Rate limits kept in Redis, shared by every process: webhook executions per workspace, failed logins.

Every key expires; losing them (a Redis restart) only resets the counts.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import time

from redis.asyncio import Redis

RATE_WINDOW_S = 60
MAX_LEASE = 16


class WebhookRateLimiter:
    """Executions per workspace per minute (`call_webhook` runs and the tester's real calls).

    Each process takes tokens in small leases (INCRBY), so most executions need no Redis
    round trip. A lease left unused when its minute ends is lost: the limit can only err
    on the strict side, by at most one lease per process.
    """

    def __init__(self, redis: Redis, limit_per_minute: int, *, window_s: int = RATE_WINDOW_S) -> None:
        self.redis = redis
        self.limit = limit_per_minute
        self.window_s = window_s
        # Small leases keep a busy process from starving the others under a low limit.
        self.lease = max(1, min(MAX_LEASE, limit_per_minute // 100))
        self._leases: dict[str, tuple[int, int]] = {}  # workspace -> (window, tokens left)
        self._locks: dict[str, asyncio.Lock] = {}

    async def allow(self, workspace_id: str) -> bool:
        window = int(time.time() // self.window_s)
        if self._take(workspace_id, window):
            return True
        lock = self._locks.setdefault(workspace_id, asyncio.Lock())
        async with lock:
            if self._take(workspace_id, window):  # another caller refilled while we waited
                return True
            key = f"sb:rl:webhooks:{workspace_id}:{window}"
            count = await self.redis.incrby(key, self.lease)
            if count == self.lease:
                await self.redis.expire(key, self.window_s * 2)
            granted = self.lease - max(0, count - self.limit)
            if granted <= 0:
                self._leases[workspace_id] = (window, 0)
                return False
            self._leases[workspace_id] = (window, granted - 1)
            return True

    def refusal(self) -> str:
        return (
            f"webhook rate limit reached ({self.limit} per minute for this workspace); raise "
            "SWITCHBOARD_WEBHOOK_RATE_LIMIT_PER_MINUTE or slow the traffic down"
        )

    def _take(self, workspace_id: str, window: int) -> bool:
        lease_window, left = self._leases.get(workspace_id, (window, 0))
        if lease_window != window or left <= 0:
            self._leases.pop(workspace_id, None)  # an old window's lease: forget it (bounded memory)
            return False
        self._leases[workspace_id] = (window, left - 1)
        return True


LOCKOUT_BASE_S = 30
LOCKOUT_MAX_S = 15 * 60
FAILURES_TTL_S = 3600

# Counts a failure and, past the allowance, locks for base * 2^(failures past it), capped.
# KEYS: failures, lock. ARGV: allowance, base ms, max ms, failures ttl s. Returns the lock in ms (0: none).
_FAIL = """
local failures = redis.call('INCR', KEYS[1])
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[4]))
local over = failures - tonumber(ARGV[1])
if over < 0 then return 0 end
local lock = math.min(tonumber(ARGV[2]) * (2 ^ over), tonumber(ARGV[3]))
redis.call('SET', KEYS[2], failures, 'PX', math.floor(lock))
return math.floor(lock)
"""


class LoginThrottle:
    """Failed logins per account and per address, with locks that double while the failures go on.

    An account locks after `account_failures` failures in an hour (whether the email exists or
    not, so a lock says nothing about which emails do); an address after `address_failures`.
    A lock lasts 30 s, then 60 s, 120 s... up to 15 minutes; a successful login clears the
    account's count. Checked before the password is hashed, so a locked flood costs no scrypt.
    """

    def __init__(self, redis: Redis, *, account_failures: int, address_failures: int) -> None:
        self.redis = redis
        self.account_failures = account_failures
        self.address_failures = address_failures
        self._fail = redis.register_script(_FAIL)

    @staticmethod
    def _keys(kind: str, value: str) -> tuple[str, str]:
        digest = hashlib.sha256(value.strip().lower().encode()).hexdigest()[:32]
        return f"sb:login:fail:{kind}:{digest}", f"sb:login:lock:{kind}:{digest}"

    async def wait_s(self, email: str, address: str) -> int:
        """Seconds until this account and address may try again (0: now)."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.pttl(self._keys("account", email)[1])
        pipe.pttl(self._keys("address", address)[1])
        waits = await pipe.execute()
        return math.ceil(max(0, *waits) / 1000)

    async def failed(self, email: str, address: str) -> int:
        """Count a failure; the seconds to wait before the next try (0 while under the allowance)."""
        lock_ms = 0
        for kind, value, allowance in (
            ("account", email, self.account_failures),
            ("address", address, self.address_failures),
        ):
            lock_ms = max(
                lock_ms,
                int(
                    await self._fail(
                        keys=list(self._keys(kind, value)),
                        args=[allowance, LOCKOUT_BASE_S * 1000, LOCKOUT_MAX_S * 1000, FAILURES_TTL_S],
                    )
                ),
            )
        return math.ceil(lock_ms / 1000)

    async def succeeded(self, email: str) -> None:
        await self.redis.delete(self._keys("account", email)[0])
