"""A minimal Slack Web API client: one method call over HTTPS with a bot token, JSON in and out."""

from __future__ import annotations

import requests

from easybackup.errors import EasybackupError

# Slack error codes that mean the token is wrong, not the request.
AUTH_ERRORS = frozenset({"not_authed", "invalid_auth", "account_inactive", "token_revoked", "token_expired",
                         "no_permission", "missing_scope", "not_allowed_token_type"})


class SlackApi:
    """Calls Slack Web API methods (`chat.postMessage`, `auth.test`, ...) with Bearer auth."""

    def __init__(self, token: str, base_url: str = "https://slack.com/api", timeout: float = 10):
        self.token = token
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout

    def call(self, method: str, **payload) -> dict:
        """Given a method name and its arguments, return Slack's JSON answer; raise EasybackupError (kind
        `connection`, or `authentication` for token errors) if the call fails or Slack answers ok:false."""
        url = f"{self.base_url}/{method}"
        headers = {"Authorization": f"Bearer {self.token}", "Content-Type": "application/json; charset=utf-8"}
        try:
            response = requests.post(url, json=payload, headers=headers, timeout=self.timeout)
        except requests.RequestException as exc:
            raise EasybackupError(f"Slack {method} failed", detail=f"{type(exc).__name__}: {exc}",
                                  hint=f"check that {self.base_url} is reachable", kind="connection",
                                  transient=True) from exc
        return self._answer(method, response)

    def _answer(self, method: str, response: requests.Response) -> dict:
        if response.status_code == 401:
            raise EasybackupError(f"Slack {method} refused the token", detail="HTTP 401",
                                  kind="authentication")
        try:
            answer = response.json()
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            raise EasybackupError(f"Slack {method} answered HTTP {response.status_code} without JSON",
                                  detail=response.text[:200], kind="connection",
                                  transient=response.status_code >= 500 or response.status_code == 429)
        if not answer.get("ok"):
            code = str(answer.get("error") or f"HTTP {response.status_code}")
            auth = code in AUTH_ERRORS
            raise EasybackupError(f"Slack {method} failed: {code}", detail=code,
                                  hint="check the bot token and its scopes" if auth else None,
                                  kind="authentication" if auth else "connection")
        return answer
