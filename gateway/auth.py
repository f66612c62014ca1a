"""Who is asking: user JWTs (HS256, `sub` required, `exp` honoured, `aud`/`iss` checked only
when JOBSTATE_JWT_AUDIENCE / JOBSTATE_JWT_ISSUER say what to expect) and callback tokens.

A callback token is the hex HMAC-SHA256 of the job id under JOBSTATE_CALLBACK_SECRET; it is
compared in constant time. Neither kind of token is ever logged.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import time
import warnings
from collections import OrderedDict
from collections.abc import Callable

import jwt
from aiohttp import web

from gateway.errors import GatewayError
from jobstate.config import MIN_SECRET_BYTES


class Unauthorized(GatewayError):
    status = 401


VERIFIED_TOKENS = 4096


class UserAuth:
    """Verifies and (in development) mints user tokens."""

    def __init__(
        self,
        secret: str,
        *,
        audience: str = "",
        issuer: str = "",
        clock: Callable[[], float] = time.time,
    ) -> None:
        """`audience` / `issuer`: when given, a token's `aud` must contain it / `iss` must equal
        it (a token without the claim is refused); when empty, the claim is not required and
        any value is accepted (most identity providers put `aud` in every token)."""
        self._key = secret.encode()
        self._audience = audience or None
        self._issuer = issuer or None
        # NOTE: PyJWT warns on every call with a key under 32 bytes. Production refuses such
        # a key at start; in development a short one is allowed and warned about once there.
        self._short_key = len(self._key) < MIN_SECRET_BYTES
        # NOTE: a page's sockets, its reconnects and its REST calls present one token again and
        # again; checking its signature and claims was ~18 % of the gateway's CPU while sockets
        # opened (py-spy). A token that passed is remembered (the exact string, so a changed
        # byte is checked afresh) with its `exp`, which is checked again on every use.
        self._verified: OrderedDict[str, tuple[str, float | None]] = OrderedDict()
        self._clock = clock

    def verify(self, token: str) -> str:
        """The user id (`sub`) of a valid token; raises Unauthorized otherwise."""
        if not token:
            raise Unauthorized("missing token")
        known = self._verified.get(token)
        if known is not None:
            sub, expires = known
            if expires is not None and expires <= self._clock():
                del self._verified[token]
                raise Unauthorized("token expired")
            self._verified.move_to_end(token)
            return sub
        sub, expires = self._check(token)
        self._verified[token] = (sub, expires)
        if len(self._verified) > VERIFIED_TOKENS:
            self._verified.popitem(last=False)
        return sub

    def _check(self, token: str) -> tuple[str, float | None]:
        try:
            with warnings.catch_warnings():
                if self._short_key:
                    warnings.simplefilter("ignore", jwt.InsecureKeyLengthWarning)
                claims = jwt.decode(
                    token,
                    self._key,
                    algorithms=["HS256"],
                    audience=self._audience,
                    issuer=self._issuer,
                    # PyJWT refuses any `aud` unless told what to expect; the contract accepts it.
                    options={"require": ["sub"], "verify_aud": self._audience is not None},
                )
        except jwt.ExpiredSignatureError:
            raise Unauthorized("token expired") from None
        except jwt.PyJWTError:
            raise Unauthorized("invalid token") from None
        sub = claims.get("sub")
        if not isinstance(sub, str) or not sub:
            raise Unauthorized("invalid token: sub must be a non-empty string")
        exp = claims.get("exp")  # PyJWT checked it is a number when present
        return sub, None if exp is None else float(exp)

    def mint(self, user_id: str, ttl: float = 86400.0) -> str:
        claims = {"sub": user_id, "iat": int(time.time()), "exp": int(time.time() + ttl)}
        with warnings.catch_warnings():
            if self._short_key:
                warnings.simplefilter("ignore", jwt.InsecureKeyLengthWarning)
            return jwt.encode(claims, self._key, algorithm="HS256")

    def user_of(self, request: web.Request) -> str:
        """The user id from `Authorization: Bearer <jwt>`; raises Unauthorized."""
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("missing bearer token")
        return self.verify(token.strip())


class CallbackAuth:
    """Callback tokens: HMAC-SHA256(job_id) under the callback secret."""

    def __init__(self, secret: str) -> None:
        self._key = secret.encode()
        # NOTE: a job's token never changes and its workers call back many times: computing
        # the HMAC was ~4 % of the gateway's CPU under the fan-out bench.
        self._expected = functools.lru_cache(maxsize=10_000)(self._token)

    def _token(self, job_id: str) -> bytes:
        return hmac.new(self._key, job_id.encode(), hashlib.sha256).hexdigest().encode()

    def token(self, job_id: str) -> str:
        return self._expected(job_id).decode()

    def check(self, job_id: str, token: str) -> None:
        """Raises Unauthorized unless `token` is this job's; any text at all is safe to pass."""
        # NOTE: bytes, not str: compare_digest raises TypeError for a str with non-ASCII
        # characters, which turned a forged token into a 500. Undecodable query bytes arrive
        # as surrogates; "replace" keeps them a mismatch instead of an error.
        presented = token.encode("utf-8", "replace")
        if not token or not hmac.compare_digest(self._expected(job_id), presented):
            raise Unauthorized("missing or invalid callback token")
