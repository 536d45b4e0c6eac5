"""Pure: the reconcile decision. Imports model, schedule and jobs; never kube or scheduler."""
