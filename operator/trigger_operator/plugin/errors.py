"""The plugin's exit codes and the errors that carry them. Pure: API answers in, messages out.

Scripts rely on the codes, so each failure the plugin knows of maps to exactly one of them and is
printed as one ``error: ...`` line, never a traceback.
"""

from __future__ import annotations

import json

OK = 0
FAILED = 1  # the run failed, or the operation did
USAGE = 2  # a usage error (argparse exits with 2 as well)
NOT_FOUND = 3
FORBIDDEN = 4  # no permission (403), or credentials refused (401)


class PluginError(Exception):
    """A failure to report as ``error: <message>`` with exit code ``code``."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def where(namespace: str | None) -> str:
    return f'in namespace "{namespace}"' if namespace else "in any namespace"


def trigger_not_found(name: str, namespace: str) -> PluginError:
    return PluginError(NOT_FOUND, f'trigger "{name}" not found {where(namespace)}')


def server_message(body: str | bytes | None) -> str:
    """The ``message`` of a Kubernetes Status body (or ``detail`` of the operator's JSON errors)."""
    try:
        parsed = json.loads(body or b"")
    except (TypeError, ValueError):
        return (body.decode(errors="replace") if isinstance(body, bytes) else body or "").strip()
    if isinstance(parsed, dict):
        found = parsed.get("message") or parsed.get("detail")
        if isinstance(found, list):  # FastAPI's validation list: name each field
            return "; ".join(f"{'.'.join(str(p) for p in d.get('loc', []))}: {d.get('msg')}" for d in found)
        if found:
            return str(found)
    return str(parsed)


def api_error(status: int, body: str | bytes | None, *, verb: str, resource: str, namespace: str | None,
              name: str | None = None) -> PluginError:
    """The error for a refused API call; ``verb`` and ``resource`` name the call (``patch``,
    ``triggers.trigger-operator.io``), since a 403's message is what a person must take to an admin."""
    message = server_message(body)
    if status == 404:
        if resource.startswith("triggers") and name:
            return trigger_not_found(name, namespace or "")
        return PluginError(NOT_FOUND, f'{resource} "{name}" not found {where(namespace)}' if name else message)
    if status == 403:
        return PluginError(FORBIDDEN, f"forbidden: may not {verb} {resource} {where(namespace)}: {message}")
    if status == 401:
        return PluginError(FORBIDDEN, f"unauthorized: the credentials were refused ({message or 'no detail'})")
    return PluginError(FAILED, f"{verb} {resource} {where(namespace)} failed ({status}): {message}")
