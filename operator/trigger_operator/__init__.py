"""trigger-operator: runs Kubernetes Jobs on cron, interval, event and conditional schedules.

Layers (pure first, checked by ``.importlinter``): ``timemath`` (time math), ``model`` (spec,
status, filters), ``jobs`` (rendering, observation, pruning) and ``events`` (reading and counting
events), ``core`` (the reconcile decision); then the shell: ``kube`` (the API interface and its
implementation), ``controller`` (queue and workers) and ``intake`` (durable event counting),
``web`` (the HTTP server), ``handlers`` (kopf registrations) and ``cli``.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("trigger-operator")
except PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "0.0.0"
