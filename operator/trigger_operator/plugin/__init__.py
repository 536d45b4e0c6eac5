"""The kubectl plugin ``kubectl trigger`` (console scripts ``kubectl-trigger`` and ``kubectl_complete-trigger``).

A client of the Kubernetes API and of the operator's event endpoint, nothing of the operator's
own machinery: ``main`` (the commands), ``views`` (pure: what is printed), ``client`` (the calls),
``complete`` (shell completion), ``errors`` (exit codes).
"""
