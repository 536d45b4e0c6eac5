"""The Trigger's spec as typed, validated data. Pure.

Field names map the seed API's request one to one in Kubernetes camelCase (``action_type`` ->
``actionType``). The CRD's OpenAPI schema in ``crds/`` repeats these fields for the API server; a
unit test fails when the two drift apart.
"""

from __future__ import annotations

import datetime as dt
import enum
import json
import re
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic.alias_generators import to_camel

from trigger_operator.model.filters import MAX_FILTERS, FilterError, check_filters
from trigger_operator.timemath import Schedule
from trigger_operator.timemath.cron import SEARCH_SPAN, CronError, CronExpression, CronSchedule, zone_identity
from trigger_operator.timemath.due import CatchUpPolicy
from trigger_operator.timemath.interval import IntervalSchedule

NAME_MAX_LENGTH = 52  # Job names add 11 characters and must stay within 63, as with CronJob
# Durations are bounded so that schedule math stays within datetime's range (year 9999) and a
# typo (an interval of 99999999999999 s) is refused with a message instead of overflowing.
MAX_SECONDS = 10 * 366 * 24 * 3600  # ten years
# actionConfig reaches every container as one environment variable; Linux refuses a single
# environment string over 128 KiB at exec (E2BIG), so the Job could never start on a real node.
ACTION_CONFIG_MAX_BYTES = 64 * 1024
# Bounds on everything a Trigger author writes (issue 17): a tenant must not be able to make the
# operator hold, log or match unbounded text. Each is generous for real use; the CRD repeats them
# (maxLength / maxItems) so the API server refuses first, and tests/unit/test_crd.py keeps them equal.
# jobTemplate is a pod spec: 64 KiB of JSON is far beyond a real one (Secrets and ConfigMaps carry
# data, not the template), and it keeps one Trigger's Job well under etcd's 1.5 MiB object limit.
JOB_TEMPLATE_MAX_BYTES = 64 * 1024
DESCRIPTION_MAX_LENGTH = 1024
CRON_EXPRESSION_MAX_LENGTH = 256
TIMEZONE_MAX_LENGTH = 64  # the longest IANA name is 32 characters
EVENT_TYPE_MAX_LENGTH = 256  # CloudEvents types are short reverse-DNS names
COLLECTION_ID_MAX_LENGTH = 256
METRIC_MAX_LENGTH = 256
KEY_MAX_LENGTH = 253  # ConfigMap and Secret keys, as Kubernetes bounds them
OBJECT_NAME_MAX_LENGTH = 253  # a DNS subdomain
API_VERSION_MAX_LENGTH = 253 + 1 + 63  # group / version
KIND_MAX_LENGTH = 63
FIELD_PATH_MAX_LENGTH = 512  # jsonPath and fieldPath
URL_MAX_LENGTH = 2048  # what browsers and most proxies accept
PROMETHEUS_QUERY_MAX_LENGTH = 4096


class ActionType(enum.StrEnum):
    CLUSTER = "cluster"
    TAXONOMY_ENRICHMENT = "taxonomy_enrichment"
    BATCH_RERUN = "batch_rerun"
    COLLECTION_TRIGGER = "collection_trigger"
    # Added by the seed's 0.82 (SDK mixpeek 1.3.783): run a retriever, evaluate an alert.
    RETRIEVER_EXECUTION = "retriever_execution"
    ALERT_EVALUATION = "alert_evaluation"


# The actionConfig keys each action type needs, as the seed's SDK (mixpeek 1.3.783) types its action
# configs: TriggerActionConfigCluster (cluster_id; also output_collection_ids, filters, mode,
# source_execution_ids, assignment_threshold), ...TaxonomyEnrichment (taxonomy_id, collection_id;
# target_collection_id, filters, incremental, batch_size, parallelism), ...BatchRerun (batch_id;
# filters, retry_failed_only), ...CollectionTrigger (collection_id; include_buckets,
# include_collections, source_filters), ...RetrieverExecution (retriever_id; inputs, filters,
# skip_cache, acceptance, notification_config). alert_evaluation has no typed config there ("evaluate
# a retriever alert"): alert_id is our decision. actionConfig stays a free object in the model, as in
# the seed's API (a Job template may want anything); the action runner refuses a run without these
# keys, naming the key, before it calls the platform.
ACTION_CONFIG_REQUIRED: dict[ActionType, tuple[str, ...]] = {
    ActionType.CLUSTER: ("cluster_id",),
    ActionType.TAXONOMY_ENRICHMENT: ("taxonomy_id", "collection_id"),
    ActionType.BATCH_RERUN: ("batch_id",),
    ActionType.COLLECTION_TRIGGER: ("collection_id",),
    ActionType.RETRIEVER_EXECUTION: ("retriever_id",),
    ActionType.ALERT_EVALUATION: ("alert_id",),
}


class TriggerType(enum.StrEnum):
    CRON = "cron"
    INTERVAL = "interval"
    EVENT = "event"
    CONDITIONAL = "conditional"


class State(enum.StrEnum):
    """What the user asks for (the seed's initial ``status``)."""

    ACTIVE = "active"
    PAUSED = "paused"
    DISABLED = "disabled"


class ConcurrencyPolicy(enum.StrEnum):
    ALLOW = "Allow"
    FORBID = "Forbid"
    REPLACE = "Replace"


class ConditionType(enum.StrEnum):
    DRIFT = "drift"  # the value moved away from the baseline by more than the threshold
    THRESHOLD = "threshold"  # the value itself crossed the threshold
    VOLUME = "volume"  # a document count crossed the threshold (the seed's 0.82: lastVolumeMeasurement)


DRIFT_METRICS = ("absolute_drift", "relative_drift", "cosine_drift")
COMPARISONS = (">", ">=", "<", "<=")
# A field path as kubectl's JSONPath writes simple ones: .status.drift, {.data.items[0].value}, "." for all.
FIELD_PATH = r"^(\.|\{?\.?([^.\[\]{}]+|\[\d+\])(\.[^.\[\]{}]+|\[\d+\])*\}?)$"
# Object names and kinds as Kubernetes spells them: a source can name nothing but one object.
OBJECT_NAME = r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$"
API_VERSION = r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?v[0-9]+((alpha|beta)[0-9]+)?$"
KIND = r"^[A-Z][A-Za-z0-9]{0,62}$"
# The API server's version of the URL rules `_checked_url` explains: an authority without userinfo,
# no fragment, and for Prometheus no query either (the operator appends /api/v1/query).
HTTP_URL = r"^https?://[^/?#@\s]+([/?][^#\s]*)?$"
PROMETHEUS_URL = r"^https?://[^/?#@\s]+(/[^?#\s]*)?$"


class SpecError(ValueError):
    """Invalid Trigger spec; ``field`` is the path of the offending field, e.g.
    ``spec.scheduleConfig.cronExpression``."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class _Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid",
                              frozen=True, use_enum_values=False)


def _checked_url(value: str, *, prometheus: bool) -> str:
    """A source's URL: http(s) with a host, no userinfo, no fragment, for Prometheus no query.

    A ``#`` or ``?`` would cancel the path the operator appends (``/api/v1/query``) and let the URL
    point anywhere on the host; ``user:pass@`` puts a credential where status and logs show it (and
    is a classic way to disguise the host). Tokens belong in ``tokenSecret``.
    """
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not value.startswith(f"{parts.scheme}://"):
        raise ValueError("must be an http:// or https:// URL")
    if "@" in parts.netloc:
        raise ValueError("must not carry user information (user:password@); put a token in tokenSecret")
    try:
        parts.port  # noqa: B018 - raises on a port that is no number or out of range
    except ValueError:
        raise ValueError("has an invalid port") from None
    if not parts.hostname:
        raise ValueError("must name a host")
    if any(c.isspace() for c in value):
        raise ValueError("must not contain white space")
    if prometheus and ("?" in value or "#" in value):
        raise ValueError("must not have a query or fragment: the operator appends /api/v1/query")
    if "#" in value:
        raise ValueError("must not have a fragment")
    if not re.fullmatch(PROMETHEUS_URL if prometheus else HTTP_URL, value):  # the CRD's rule, same meaning
        raise ValueError("is not a well-formed URL")
    return value


class ConfigMapSource(_Model):
    name: str = Field(pattern=OBJECT_NAME, max_length=OBJECT_NAME_MAX_LENGTH)
    key: str = Field(min_length=1, max_length=KEY_MAX_LENGTH)


class ObjectSource(_Model):
    """Any object's field in the Trigger's namespace, e.g. a custom resource's status."""

    api_version: str = Field(pattern=API_VERSION, max_length=API_VERSION_MAX_LENGTH)
    kind: str = Field(pattern=KIND, max_length=KIND_MAX_LENGTH)
    name: str = Field(pattern=OBJECT_NAME, max_length=OBJECT_NAME_MAX_LENGTH)
    field_path: str = Field(pattern=FIELD_PATH, max_length=FIELD_PATH_MAX_LENGTH)

    @field_validator("kind")
    @classmethod
    def _not_a_secret(cls, value: str) -> str:
        if value == "Secret":
            raise ValueError("Secrets are no object source (only an http source's tokenSecret is read)")
        return value


class SecretKeyRef(_Model):
    name: str = Field(pattern=OBJECT_NAME, max_length=OBJECT_NAME_MAX_LENGTH)
    key: str = Field(min_length=1, max_length=KEY_MAX_LENGTH)


class HttpSource(_Model):
    """A JSON document fetched with GET; optionally with a Bearer token from a Secret of the namespace."""

    url: str = Field(max_length=URL_MAX_LENGTH)
    json_path: str = Field(default=".", pattern=FIELD_PATH, max_length=FIELD_PATH_MAX_LENGTH)
    token_secret: SecretKeyRef | None = None

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return _checked_url(value, prometheus=False)


class PrometheusSource(_Model):
    """An instant query; its result must be one sample (a scalar, or a vector of one series)."""

    url: str = Field(max_length=URL_MAX_LENGTH)
    query: str = Field(min_length=1, max_length=PROMETHEUS_QUERY_MAX_LENGTH)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return _checked_url(value, prometheus=True)


class ConditionSource(_Model):
    config_map: ConfigMapSource | None = None
    object: ObjectSource | None = None
    http: HttpSource | None = None
    prometheus: PrometheusSource | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> ConditionSource:
        given = [name for name in ("config_map", "object", "http", "prometheus") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError("exactly one of configMap, object, http, prometheus is required"
                             + (f", found {', '.join(to_camel(g) for g in given)}" if given else ""))
        return self

    @property
    def kind(self) -> str:
        return next(to_camel(n) for n in ("config_map", "object", "http", "prometheus") if getattr(self, n))


class ScheduleConfig(_Model):
    # cron
    cron_expression: str | None = Field(default=None, max_length=CRON_EXPRESSION_MAX_LENGTH)
    timezone: str = Field(default="UTC", max_length=TIMEZONE_MAX_LENGTH)
    # interval
    interval_seconds: int | None = Field(default=None, ge=1, le=MAX_SECONDS)
    start_immediately: bool = False
    # event
    event_type: str | None = Field(default=None, min_length=1, max_length=EVENT_TYPE_MAX_LENGTH)
    event_threshold: int | None = Field(default=None, ge=1)
    collection_id: str | None = Field(default=None, max_length=COLLECTION_ID_MAX_LENGTH)
    cooldown_seconds: int = Field(default=0, ge=0, le=MAX_SECONDS)
    # model/filters.py: CloudEvents Subscriptions API dialects, bounded in all (check_filters)
    filters: list[dict[str, Any]] | None = Field(default=None, max_length=MAX_FILTERS)
    window_seconds: int | None = Field(default=None, ge=1, le=MAX_SECONDS)
    # conditional
    condition_type: ConditionType | None = None
    metric: str | None = Field(default=None, min_length=1, max_length=METRIC_MAX_LENGTH)
    threshold: float | None = Field(default=None, allow_inf_nan=False)
    comparison: str = ">"
    check_interval_seconds: int | None = Field(default=None, ge=1, le=MAX_SECONDS)
    source: ConditionSource | None = None  # None: the action type's default (jobs/catalog.py)

    @field_validator("comparison")
    @classmethod
    def _known_comparison(cls, value: str) -> str:
        if value not in COMPARISONS:
            raise ValueError(f"expected one of {', '.join(COMPARISONS)}")
        return value

    @model_validator(mode="after")
    def _drift_metric_known(self) -> ScheduleConfig:
        if self.condition_type is ConditionType.DRIFT and self.metric not in DRIFT_METRICS:
            raise ValueError(f"scheduleConfig.metric must be one of {', '.join(DRIFT_METRICS)} when conditionType "
                             "is 'drift' (the drift measure between the value and the baseline)")
        return self

    @field_validator("filters")
    @classmethod
    def _filters_well_formed(cls, value: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
        if value is not None:
            check_filters(value, "spec.scheduleConfig.filters")
        return value


_REQUIRED: dict[TriggerType, tuple[str, ...]] = {
    TriggerType.CRON: ("cron_expression",),
    TriggerType.INTERVAL: ("interval_seconds",),
    TriggerType.EVENT: ("event_type", "event_threshold"),
    # No source: a conditional Trigger without one reads its action type's default from the admin's
    # action catalog (jobs/catalog.py); the controller, which has the catalog, decides (Invalid,
    # naming spec.scheduleConfig.source, when there is none).
    TriggerType.CONDITIONAL: ("condition_type", "metric", "threshold", "check_interval_seconds"),
}


class TriggerSpec(_Model):
    action_type: ActionType
    action_config: dict[str, Any] = Field(default_factory=dict)
    trigger_type: TriggerType
    schedule_config: ScheduleConfig
    description: str | None = Field(default=None, max_length=DESCRIPTION_MAX_LENGTH)
    state: State = State.ACTIVE
    # Forbid by default, unlike CronJob's Allow: the seed's actions (clustering, enrichment,
    # re-runs) work on shared data, and two overlapping runs of one of them are rarely wanted.
    concurrency_policy: ConcurrencyPolicy = ConcurrencyPolicy.FORBID
    # At least 1: with 0 every moment would be late by the time it is handled, so none would run.
    starting_deadline_seconds: int | None = Field(default=None, ge=1, le=MAX_SECONDS)
    catch_up_policy: CatchUpPolicy = CatchUpPolicy.LATEST
    successful_jobs_history_limit: int = Field(default=3, ge=0, le=100)
    failed_jobs_history_limit: int = Field(default=1, ge=0, le=100)
    # 0 means never stop. 5 in a row is a broken run, not bad luck; Snowflake stops tasks at 10.
    max_consecutive_failures: int = Field(default=5, ge=0)
    job_template: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _type_fields_present(self) -> TriggerSpec:
        for name in _REQUIRED[self.trigger_type]:
            if getattr(self.schedule_config, name) is None:
                raise ValueError(f"scheduleConfig.{to_camel(name)} is required when triggerType is "
                                 f"{self.trigger_type.value!r}")
        return self

    @property
    def starting_deadline(self) -> dt.timedelta | None:
        if self.starting_deadline_seconds is None:
            return None
        return dt.timedelta(seconds=self.starting_deadline_seconds)

    def is_time_based(self) -> bool:
        return self.trigger_type in (TriggerType.CRON, TriggerType.INTERVAL)


def parse_spec(raw: dict[str, Any]) -> TriggerSpec:
    """Validates a raw spec; raises `SpecError` naming the first bad field."""
    try:
        spec = TriggerSpec.model_validate(raw)
    except ValidationError as error:
        first = error.errors()[0]
        cause = (first.get("ctx") or {}).get("error")
        if isinstance(cause, FilterError):  # names the filter itself, deeper than pydantic's location
            raise SpecError(cause.path, cause.reason) from None
        location = ".".join(str(p) for p in first["loc"])
        message = first["msg"]
        if first["type"] == "value_error" and message.startswith("Value error, scheduleConfig.metric must"):
            raise SpecError("spec.scheduleConfig.metric", message.removeprefix("Value error, scheduleConfig.metric ")
                            ) from None
        if first["type"] == "value_error" and "is required when" in message:
            field, reason = message.removeprefix("Value error, ").split(" ", 1)
            raise SpecError(f"spec.{field}", reason) from None
        raise SpecError(f"spec.{location}" if location else "spec", message) from None
    size = len(json.dumps(spec.action_config, separators=(",", ":")).encode())
    if size > ACTION_CONFIG_MAX_BYTES:
        raise SpecError("spec.actionConfig", f"is {size} bytes as JSON; at most {ACTION_CONFIG_MAX_BYTES} are "
                        "allowed, since it reaches the Job as one environment variable (put large inputs "
                        "in a ConfigMap or object store and pass their name)")
    if spec.job_template is not None:
        size = len(json.dumps(spec.job_template, separators=(",", ":")).encode())
        if size > JOB_TEMPLATE_MAX_BYTES:
            raise SpecError("spec.jobTemplate", f"is {size} bytes as JSON; at most {JOB_TEMPLATE_MAX_BYTES} are "
                            "allowed (put scripts and data in a ConfigMap the pod mounts)")
    if spec.trigger_type is TriggerType.CRON:
        cron_schedule(spec)  # raises SpecError when the expression or zone is unusable
    return spec


def never_fires(spec: TriggerSpec) -> str:
    """Why a valid cron expression is no schedule: the webhook's refusal and the controller's
    NeverFires message, in one wording."""
    config = spec.schedule_config
    return (f"spec.scheduleConfig.cronExpression: {config.cron_expression!r} has no moment within {SEARCH_SPAN} "
            f"in {config.timezone}, so it never fires")


def cron_schedule(spec: TriggerSpec) -> CronSchedule:
    assert spec.schedule_config.cron_expression is not None
    try:
        schedule = CronSchedule.parse(spec.schedule_config.cron_expression, spec.schedule_config.timezone)
    except CronError as error:
        raise SpecError(f"spec.scheduleConfig.{error.field}", str(error)) from None
    return schedule


def schedule_fingerprint(spec: TriggerSpec) -> str:
    """The schedule as people read it (``status.observedSchedule``, the Schedule column):
    ``cron 0 2 * * * Europe/Berlin``, ``interval 3600s``, ``event documents_added x100``,
    ``drift cosine_drift > 0.15 every 300s``."""
    config = spec.schedule_config
    if spec.trigger_type is TriggerType.CRON:
        assert config.cron_expression is not None
        return f"cron {' '.join(config.cron_expression.split())} {config.timezone}"
    if spec.trigger_type is TriggerType.INTERVAL:
        return f"interval {config.interval_seconds}s"
    if spec.trigger_type is TriggerType.EVENT:
        collection = f" in {config.collection_id}" if config.collection_id else ""
        return f"event {config.event_type}{collection} x{config.event_threshold}"
    compared = ">" if config.condition_type is ConditionType.DRIFT else config.comparison
    every = config.check_interval_seconds
    return f"{config.condition_type} {config.metric} {compared} {config.threshold} every {every}s"


def same_schedule(recorded: str, spec: TriggerSpec) -> bool:
    """Whether ``recorded`` (an earlier `schedule_fingerprint`) makes the same moments as the spec:
    compared by meaning, so spacing, ``0-6`` for ``*`` or ``Etc/UTC`` for ``UTC`` keep the cursor."""
    current = schedule_fingerprint(spec)
    if recorded == current:
        return True
    if not recorded.startswith("cron ") or not current.startswith("cron "):
        return False
    try:
        old_expression, old_zone = recorded.removeprefix("cron ").rsplit(" ", 1)
        old = CronExpression.parse(" ".join(old_expression.split()))
        new = cron_schedule(spec)
        return old.meaning == new.expression.meaning and zone_identity(old_zone) == zone_identity(
            spec.schedule_config.timezone)
    except (CronError, SpecError, ValueError):
        return False


def time_schedule(spec: TriggerSpec, *, origin: dt.datetime, first_run: bool) -> Schedule | None:
    """The schedule of a cron or interval Trigger; None for event and conditional Triggers.

    ``origin`` anchors interval lattices (the last scheduled moment, or when the Trigger became
    active); ``first_run`` says no moment was scheduled yet, so ``startImmediately`` applies.
    """
    if spec.trigger_type is TriggerType.CRON:
        return cron_schedule(spec)
    if spec.trigger_type is TriggerType.INTERVAL:
        assert spec.schedule_config.interval_seconds is not None
        return IntervalSchedule(origin=origin, period=dt.timedelta(seconds=spec.schedule_config.interval_seconds),
                                include_origin=first_run and spec.schedule_config.start_immediately)
    return None
