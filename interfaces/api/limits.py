"""Rate limits in Redis: a token bucket per API key, and the failed-login throttle.

Both live in Redis so every server process and host share one count. The token bucket is one
Lua script (atomic, one round trip, the clock is Redis's ``TIME`` so hosts with skewed clocks
agree); the libraries we looked at (``limits``, ``slowapi``) offer fixed and moving windows but
no token bucket, which is what lets a client burst and then settle at a steady rate. When Redis
does not answer the request is refused with 503 rather than let through unlimited.
"""

from __future__ import annotations

import math
import uuid
from functools import lru_cache
from typing import Final

import redis
import structlog

from interfaces.api.errors import ApiError
from interfaces.api.settings import get_api_settings
from pipeline.settings import get_settings

log = structlog.get_logger(__name__)

PREFIX: Final = "teleai:api:"

# KEYS[1] the bucket; ARGV rate (tokens/s), burst (bucket size). Returns {allowed, wait_ms}.
_BUCKET_LUA: Final = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1]) or burst
local ts = tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - ts) * rate / 1000)
local allowed = 0
local wait_ms = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
else
  wait_ms = math.ceil((1 - tokens) * 1000 / rate)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', now)
redis.call('PEXPIRE', KEYS[1], math.ceil(burst * 1000 / rate) + 1000)
return {allowed, wait_ms}
"""

UNAVAILABLE = "the rate limiter (Redis) is unavailable; try again shortly"


@lru_cache(maxsize=1)
def redis_client() -> redis.Redis:
    """The process's Redis client (``TELEAI_API_REDIS_URL``, else the broker's Redis)."""
    api = get_api_settings()
    url = (api.redis_url or get_settings().broker_url).get_secret_value()
    return redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)


@lru_cache(maxsize=1)
def _bucket_script() -> redis.commands.core.Script:
    return redis_client().register_script(_BUCKET_LUA)


def check_key_rate(key_id: uuid.UUID) -> None:
    """Take one token from the key's bucket, or raise 429 with ``Retry-After``."""
    api = get_api_settings()
    try:
        allowed, wait_ms = _bucket_script()(
            keys=[f"{PREFIX}bucket:{key_id}"],
            args=[api.rate_limit_per_second, api.rate_limit_burst],
        )
    except redis.RedisError as error:
        log.warning("rate_limiter_unavailable", error=type(error).__name__)
        raise ApiError(503, UNAVAILABLE) from error
    if not int(allowed):
        retry = max(1, math.ceil(int(wait_ms) / 1000))
        raise ApiError(
            429,
            f"rate limit of this API key exceeded; retry in {retry} s",
            headers={"Retry-After": str(retry)},
        )


def _login_keys(login: str, address: str | None) -> list[tuple[str, int]]:
    api = get_api_settings()
    keys = [(f"{PREFIX}login:account:{login.strip().lower()}", api.login_max_failures_per_account)]
    if address:
        keys.append((f"{PREFIX}login:address:{address}", api.login_max_failures_per_address))
    return keys


def check_login_allowed(login: str, address: str | None) -> None:
    """Raise 429 while the account or the address has too many recent failed logins."""
    try:
        pipe = redis_client().pipeline()
        keys = _login_keys(login, address)
        for key, _ in keys:
            pipe.get(key)
            pipe.ttl(key)
        values = pipe.execute()
    except redis.RedisError as error:
        message = "the login throttle (Redis) is unavailable; try again shortly"
        raise ApiError(503, message) from error
    for index, (_, limit) in enumerate(keys):
        count, ttl = values[2 * index], values[2 * index + 1]
        if count is not None and int(count) >= limit:
            retry = max(1, int(ttl))
            raise ApiError(
                429,
                f"too many failed logins; try again in {retry} s",
                headers={"Retry-After": str(retry)},
            )


def record_login_failure(login: str, address: str | None) -> None:
    """Count one failed login against the account and the address (window starts at the first)."""
    window = get_api_settings().login_window_seconds
    try:
        pipe = redis_client().pipeline()
        for key, _ in _login_keys(login, address):
            pipe.incr(key)
            pipe.expire(key, window, nx=True)
        pipe.execute()
    except redis.RedisError as error:
        log.warning("login_throttle_unavailable", error=type(error).__name__)


def clear_login_failures(login: str) -> None:
    """A good login forgives the account's failures (not the address's)."""
    try:
        redis_client().delete(_login_keys(login, None)[0][0])
    except redis.RedisError as error:
        log.warning("login_throttle_unavailable", error=type(error).__name__)
