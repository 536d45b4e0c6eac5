"""The Trigger API's names, as kubebuilder's ``api/v1alpha1`` holds them: the group and version, the
resource, our finalizer, and every label and annotation the operator reads or writes. Every module
imports them from here, so a reader looks in one place and a rename is one edit."""

from __future__ import annotations

GROUP = "trigger-operator.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "Trigger"
PLURAL = "triggers"
# A Kubernetes namespace name (an RFC 1123 DNS label): what X-Namespace (web/scope.py) and a JetStream
# subject's last token (intake/jetstream.py) must be before either names a namespace.
NAMESPACE_PATTERN = r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?"

LABEL_TRIGGER = f"{GROUP}/trigger"
LABEL_RUN_KIND = f"{GROUP}/run-kind"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGER = "trigger-operator"
LABEL_LEASE_OF = f"{GROUP}/lease-of"  # on a shard Lease: the install's lease name, so one LIST finds all
LABEL_ROLE = f"{GROUP}/lease-role"  # on a shard Lease: shard or member
# On a Job, in the sharded mode: its Trigger's shard as "<k>-of-<S>" (core/sharding.py), so that each
# replica watches only the Jobs of the shards it holds.
LABEL_SHARD = f"{GROUP}/shard"

ANNOTATION_SCHEDULED_TIME = f"{GROUP}/scheduled-time"
ANNOTATION_RUN_NOW = f"{GROUP}/run-now"
ANNOTATION_RESUME = f"{GROUP}/resume"
# A backfill request: JSON {"id", "from", "to", "parallelism", "cancel"} (core/firing/backfill.py).
ANNOTATION_BACKFILL = f"{GROUP}/backfill"
# On a Job of a groupBy event Trigger: the key (the attribute's value) its run is for (events/keys.py).
ANNOTATION_EVENT_KEY = f"{GROUP}/event-key"
# On a compound Trigger's Job: the parts that fired it, comma-separated (core/firing/compound.py).
ANNOTATION_PARTS = f"{GROUP}/parts"
ANNOTATION_CREATED_BY = f"{GROUP}/created-by"  # who created a Trigger (the webhook, or the REST API)
ANNOTATION_DISPLAY_NAME = f"{GROUP}/display-name"  # the seed's human-readable name
ANNOTATION_SOURCE_APPROVAL = f"{GROUP}/source-approval"  # the webhook's signed approval of a source
# ... and of spec.notifications.signingSecretRef (admission/approval.py), a subject of its own
ANNOTATION_NOTIFICATIONS_APPROVAL = f"{GROUP}/notifications-approval"

# Every Job we create carries this finalizer until its result is counted in the Trigger's status, so
# a Job cannot disappear unseen (TTL, a hand delete, garbage collection during a watch gap or while
# the operator is down): its end is always read before it goes. Docs, "How runs are counted".
FINALIZER = f"{GROUP}/count-result"
# On a Trigger with spec.notifications: holds its deletion until trigger.deleted and every event still
# owed are delivered or given up, or a bounded grace passed (docs/notifications.md, notify/finalizer.py).
FINALIZER_NOTIFY = f"{GROUP}/notify"
