"""The auth steps of a manifest request: up-front credentials, the 401 challenge, tokens.

No `/v2/` ping: the manifest request goes out directly and a 401 challenge tells the auth
scheme.  Once a host's challenge is known, later requests authenticate up front.

Credentials go to the registry itself and to the token realm the registry itself announced,
nowhere else: a challenge counts only when the 401 comes from the registry's own origin
(scheme, host, port).  A 401 from a redirect target (blob storage, a CDN) is an error, and its
challenge is never remembered as the registry's.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from autoupdated import manifest as mf
from autoupdated.adapters.registry import wwwauth
from autoupdated.adapters.registry.hosts import Ask
from autoupdated.adapters.registry.status import foreign_401
from autoupdated.adapters.registry.token import (
    Token,
    TokenAsk,
    TokenCache,
    basic_authorization,
    parse_token_answer,
    token_request,
)
from autoupdated.adapters.registry.transport import Response, Transport
from autoupdated.errors import AuthenticationRequired, RegistryProtocolError
from autoupdated.secrets import Secrets

__all__ = ["Auth"]

log = logging.getLogger(__name__)


class Auth:
    """Sends a manifest request with the credentials its host's challenge asks for."""

    def __init__(
        self, transport: Transport, secrets: Secrets, *, clock: Callable[[], float], token_margin: float
    ) -> None:
        self._transport = transport
        self._secrets = secrets
        self._clock = clock
        self._token_margin = token_margin
        self.tokens = TokenCache(clock)
        self.token_requests = 0  # how many token requests went out (for tests and debug logs)

    async def send(self, ask: Ask) -> Response:
        """The answer to `ask`, after one round of authentication when the registry asked."""
        state, scope = ask.state, ask.scope
        headers = {"Accept": mf.ACCEPT}
        sent_auth = False
        if state.challenge is not None:
            authorization = await self._authorization(ask, state.challenge, scope)
            if authorization is not None:
                headers["Authorization"] = authorization
                sent_auth = True
        response = await self._send(ask, headers)
        if response.status != 401:
            return response
        challenge = self._pick_challenge(ask, response)
        if challenge is None:
            return response  # no usable challenge: reported as authentication required
        if challenge.scheme == "basic" and sent_auth and state.challenge == challenge:
            return response  # the credentials were refused
        state.challenge = challenge
        state.mark_probed()  # the others need not wait for this request's token
        wanted_scope = challenge.get("scope") or scope
        if challenge.scheme == "bearer" and sent_auth:
            # A cached token was refused (expired early, or another scope is wanted): one fresh
            # try.  Forget only that very token, so concurrent refusals share one new request.
            refused = headers["Authorization"].removeprefix("Bearer ")
            self.tokens.forget(TokenCache.key(challenge, wanted_scope, ask.credentials), refused)
            self.tokens.forget(TokenCache.key(challenge, scope, ask.credentials), refused)
        authorization = await self._authorization(ask, challenge, wanted_scope)
        if authorization is None:
            return response
        headers["Authorization"] = authorization
        return await self._send(ask, headers)

    async def _send(self, ask: Ask, headers: dict[str, str]) -> Response:
        response = await self._transport.manifest(ask.state, ask.method, ask.path, headers, ask.what)
        if response.status == 401 and not response.from_origin:
            raise foreign_401(ask, response)
        return response

    def _pick_challenge(self, ask: Ask, response: Response) -> wwwauth.Challenge | None:
        state, what = ask.state, ask.what
        try:
            challenges = wwwauth.parse_all(response.headers.get_list("WWW-Authenticate"))
        except wwwauth.WWWAuthenticateError as err:
            raise RegistryProtocolError(f"registry {state.host} answered 401 for {what} with {err}") from None
        for challenge in challenges:
            if challenge.scheme == "bearer" and not challenge.realm:
                continue
            if challenge.scheme in ("basic", "bearer"):
                return challenge
        if challenges:
            schemes = ", ".join(sorted({c.scheme for c in challenges}))
            raise AuthenticationRequired(
                f"authentication required: registry {state.host} asks for an unsupported auth scheme "
                f"({schemes}) for {what}",
                status=401,
            )
        return None

    async def _authorization(self, ask: Ask, challenge: wwwauth.Challenge, scope: str) -> str | None:
        credentials = ask.credentials
        if challenge.scheme == "basic":
            if credentials is None or not (credentials.username or credentials.password):
                return None
            return basic_authorization(credentials)
        key = TokenCache.key(challenge, scope, credentials)
        token = await self.tokens.get(key, lambda: self._fetch_token(ask, challenge, scope))
        return f"Bearer {token}"

    async def _fetch_token(self, ask: Ask, challenge: wwwauth.Challenge, scope: str) -> Token:
        state = ask.state
        who = TokenAsk(state.host, ask.ref.domain, ask.what, ask.credentials, state.settings.allow_http)
        request = token_request(challenge, scope, who)
        log.debug(
            "requesting a bearer token from %s (service=%r, scope=%r)", request.url, challenge.get("service"), scope
        )
        self.token_requests += 1
        answer = await self._transport.token(
            state,
            request.method,
            request.url,
            params=request.params,
            data=request.data,
            headers=request.headers,
            what=ask.what,
        )
        token = parse_token_answer(
            answer.status,
            answer.headers,
            answer.body,
            who,
            netloc=request.netloc,
            now=self._clock(),
            margin=self._token_margin,
            secrets=self._secrets,
        )
        self._secrets.add(token.value)
        self._secrets.add(token.refresh)
        return token
