"""Keys and passwords that never leave memory: `Secret`, credentials in URLs, and the one rule for which key to send.

A key held in a `Secret` shows as ``'**********'`` in ``repr``, ``str``, f-strings, logs and pickles (so it is not in
``training_args.bin``, a checkpoint or a ``push_to_hub`` upload); only `Secret.reveal` (or `reveal`) gives the value,
at the one place that sends it. A URL's ``user:password@`` part is masked by `mask_credentials` wherever a URL is
written to a file or a message.
"""

from __future__ import annotations

import os
import re
import urllib.parse
from typing import Any

from trl_seqpo.errors import UserInputError

__all__ = ["MASK", "Secret", "hide_secrets", "looks_secret", "mask_credentials", "resolve_api_key", "reveal"]

MASK = "**********"
OPENAI_HOSTS = ("api.openai.com",)
_SECRET_NAME = re.compile(r"(api_?key|token|secret|password|passwd|credential)", re.IGNORECASE)
_URL_CREDENTIALS = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^\s/@]+)@")


class Secret:
    """A string that shows a mask everywhere but `reveal` (as pydantic's ``SecretStr``).

    A pickle (``torch.save`` of a config, a checkpoint) stores the mask, not the value: a key that must survive a
    pickle belongs in an environment variable or a key file (``api_key_env`` / ``api_key_file``). ``copy.deepcopy``
    keeps the value (it stays in memory).

    Examples:
        >>> key = Secret("sk-123")
        >>> key, str(key), f"{key}", key.reveal()
        (Secret('**********'), '**********', '**********', 'sk-123')
        >>> import pickle; pickle.loads(pickle.dumps(key)).reveal()
        ''
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if isinstance(value, Secret):
            value = value.reveal()
        if not isinstance(value, str):
            raise TypeError(f"a Secret holds a string, got {type(value).__name__}")
        self._value = value

    def reveal(self) -> str:
        """The value itself; call it only where the key is sent."""
        return self._value

    def __repr__(self) -> str:
        return f"Secret('{MASK}')"

    def __str__(self) -> str:
        return MASK

    def __format__(self, spec: str) -> str:
        return format(MASK, spec)

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("Secret", self._value))

    def __reduce__(self) -> tuple:
        return (Secret, ("",))  # a pickle never carries the value

    def __copy__(self) -> Secret:
        return self

    def __deepcopy__(self, memo: dict) -> Secret:
        return self


def reveal(value: Any) -> Any:
    """`Secret.reveal` for a `Secret`, the value itself otherwise."""
    return value.reveal() if isinstance(value, Secret) else value


def looks_secret(name: str, value: Any) -> bool:
    """Whether a setting ``name=value`` holds a credential: a key-like name, or a URL with ``user:password@``."""
    if isinstance(value, Secret):
        return True
    if not isinstance(value, str):
        return False
    return bool(_SECRET_NAME.search(name)) or mask_credentials(value) != value


def hide_secrets(settings: Any) -> Any:
    """A copy of the mapping ``settings`` whose credentials (see `looks_secret`) are wrapped in `Secret`.

    Examples:
        >>> hide_secrets({"api_key": "sk-1", "model": "m"})
        {'api_key': Secret('**********'), 'model': 'm'}
    """
    if not isinstance(settings, dict):
        return settings
    return {
        name: Secret(value) if isinstance(value, str) and looks_secret(name, value) else value
        for name, value in settings.items()
    }


def mask_credentials(text: Any) -> Any:
    """``text`` with the ``user:password@`` part of every URL in it masked (other values are returned unchanged).

    Examples:
        >>> mask_credentials("judge at http://bob:pw@127.0.0.1:8000/v1 failed")
        'judge at http://***@127.0.0.1:8000/v1 failed'
    """
    if not isinstance(text, str):
        return text
    return _URL_CREDENTIALS.sub(lambda match: f"{match['scheme']}***@", text)


def resolve_api_key(
    api_key: str | Secret | None,
    api_key_env: str | None,
    api_key_file: str | None,
    base_url: str | None,
    *,
    what: str = "the key",
) -> str:
    """The key to send to ``base_url``: ``api_key``, else the first line of ``api_key_file``, else ``$api_key_env``;
    without any, ``$OPENAI_API_KEY`` only when the endpoint is OpenAI's own API, and ``"EMPTY"`` (what a local vLLM
    accepts) for every other host, so no key meant for OpenAI is sent elsewhere.

    Raises:
        UserInputError: The named key file or environment variable is missing or empty.
    """
    key = reveal(api_key)
    if key:
        return key
    if api_key_file:
        try:
            with open(api_key_file, encoding="utf-8") as handle:
                key = handle.readline().strip()
        except OSError as exc:
            raise UserInputError(f"cannot read {what} file ({exc.strerror})", path=api_key_file) from None
        if not key:
            raise UserInputError(f"{what} file is empty", path=api_key_file)
        return key
    if api_key_env:
        key = os.environ.get(api_key_env, "").strip()
        if not key:
            raise UserInputError(f"environment variable {api_key_env} ({what}) is not set")
        return key
    host = urllib.parse.urlsplit(base_url or "https://api.openai.com/v1").hostname or ""
    if host in OPENAI_HOSTS:
        return os.environ.get("OPENAI_API_KEY") or "EMPTY"
    return "EMPTY"
