"""trigger-operator: runs Kubernetes Jobs on cron, interval, event and conditional schedules.

Layers (pure first): ``schedule`` (time math), ``model`` (spec and status), ``jobs`` (rendering,
observation, pruning), ``core`` (the reconcile decision); then the shell: ``kube`` (API calls),
``scheduler`` (queue and workers), ``handlers`` (kopf registrations) and ``cli``.
"""
