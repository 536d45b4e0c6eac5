"""The Trigger's spec as typed, validated data. Pure.

Field names map the seed API's request one to one in Kubernetes camelCase (``action_type`` ->
``actionType``). The CRD's OpenAPI schema in ``crds/`` repeats these fields for the API server; a
unit test fails when the two drift apart.
"""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
import json
import re
from dataclasses import dataclass
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from pydantic import AwareDatetime, Field, ValidationError, field_validator, model_validator
from pydantic.alias_generators import to_camel

from trigger_operator.model.base import (
    KEY_MAX_LENGTH,
    OBJECT_NAME,
    OBJECT_NAME_MAX_LENGTH,
    URL_MAX_LENGTH,
    SpecModel,
    check_http_url,
)
from trigger_operator.model.filters import MAX_FILTERS, FilterError, check_filters
from trigger_operator.model.notify import Notifications
from trigger_operator.timemath import Schedule
from trigger_operator.timemath.calendar import TooCostly, compose, jitter_offset
from trigger_operator.timemath.cron import (
    SEARCH_SPAN,
    CronError,
    CronExpression,
    CronSchedule,
    load_zone,
    zone_identity,
)
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
# Issue 22's calendar (timemath/calendar.py). 16 lines are more than any real calendar writes (one
# per weekday pattern and a few specials); 366 dates are a year of holidays, or every day of one.
MAX_CRON_LINES = 16
MAX_EXCLUDE_DATES = 366
MAX_JITTER_SECONDS = 3600  # an hour: past that it is another schedule, not a spread
MAX_RUNS = 1_000_000
DATE = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
TIMEZONE_MAX_LENGTH = 64  # the longest IANA name is 32 characters
EVENT_TYPE_MAX_LENGTH = 256  # CloudEvents types are short reverse-DNS names
COLLECTION_ID_MAX_LENGTH = 256
METRIC_MAX_LENGTH = 256
API_VERSION_MAX_LENGTH = 253 + 1 + 63  # group / version
KIND_MAX_LENGTH = 63
FIELD_PATH_MAX_LENGTH = 512  # jsonPath and fieldPath
PROMETHEUS_QUERY_MAX_LENGTH = 4096
# Compound Triggers (core/firing/compound.py): 2 to 8 parts. One part is the part itself; past 8 a
# "these together" rule is better split into compounds of compounds, which stay readable.
MIN_PARTS = 2
MAX_PARTS = 8
REQUIRE_WORDS = ("all", "any")
# Per-key counting (issue 23, events/keys.py): groupBy names a CloudEvents attribute, spelled as the
# CloudEvents spec bounds attribute names (lower-case a-z and 0-9, at most 20 characters).
ATTRIBUTE_NAME = r"^[a-z0-9]{1,20}$"
MAX_KEYS_DEFAULT = 100
MAX_KEYS_LIMIT = 1000  # status must hold every key with its window within STATUS_MAX_BYTES
# A key's counter and each of its buckets saturate here (status keeps them small): with groupBy an
# eventThreshold or absence.fewerThan above it is refused, since a key could never reach it.
KEY_COUNT_MAX = 9_999_999
# Absence (events/absence.py): a window of at least 60 s, the shortest the operator's one-second
# resolution divides into 60 parts as windowSeconds' buckets do; shorter silences are noise.
ABSENCE_MIN_SECONDS = 60


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
    # Runs when enough of its parts (other Triggers of its namespace) fired within a window
    # (core/firing/compound.py; docs/events.md, "Compound Triggers").
    COMPOUND = "compound"


# The Trigger types that run on a schedule (a cursor, moments, nextScheduledAt as the next moment).
TIME_BASED = frozenset({TriggerType.CRON, TriggerType.INTERVAL})


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


def _checked_url(value: str, *, prometheus: bool) -> str:
    """A source's URL: http(s) with a host, no userinfo, no fragment, for Prometheus no query.

    A ``#`` or ``?`` would cancel the path the operator appends (``/api/v1/query``) and let the URL
    point anywhere on the host; ``user:pass@`` puts a credential where status and logs show it (and
    is a classic way to disguise the host). Tokens belong in ``tokenSecret``.
    """
    check_http_url(value, no_userinfo="put a token in tokenSecret")
    if any(c.isspace() for c in value):
        raise ValueError("must not contain white space")
    if prometheus and ("?" in value or "#" in value):
        raise ValueError("must not have a query or fragment: the operator appends /api/v1/query")
    if "#" in value:
        raise ValueError("must not have a fragment")
    if not re.fullmatch(PROMETHEUS_URL if prometheus else HTTP_URL, value):  # the CRD's rule, same meaning
        raise ValueError("is not a well-formed URL")
    return value


class ConfigMapSource(SpecModel):
    name: str = Field(pattern=OBJECT_NAME, max_length=OBJECT_NAME_MAX_LENGTH)
    key: str = Field(min_length=1, max_length=KEY_MAX_LENGTH)


class ObjectSource(SpecModel):
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


class SecretKeyRef(SpecModel):
    name: str = Field(pattern=OBJECT_NAME, max_length=OBJECT_NAME_MAX_LENGTH)
    key: str = Field(min_length=1, max_length=KEY_MAX_LENGTH)


class HttpSource(SpecModel):
    """A JSON document fetched with GET; optionally with a Bearer token from a Secret of the namespace."""

    url: str = Field(max_length=URL_MAX_LENGTH)
    json_path: str = Field(default=".", pattern=FIELD_PATH, max_length=FIELD_PATH_MAX_LENGTH)
    token_secret: SecretKeyRef | None = None

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return _checked_url(value, prometheus=False)


class PrometheusSource(SpecModel):
    """An instant query; its result must be one sample (a scalar, or a vector of one series)."""

    url: str = Field(max_length=URL_MAX_LENGTH)
    query: str = Field(min_length=1, max_length=PROMETHEUS_QUERY_MAX_LENGTH)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return _checked_url(value, prometheus=True)


class ConditionSource(SpecModel):
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


_CronLine = Annotated[str, Field(min_length=1, max_length=CRON_EXPRESSION_MAX_LENGTH)]
_Date = Annotated[str, Field(pattern=DATE, max_length=10)]
# The calendar fields of cron and interval Triggers (issue 22), which event and conditional
# Triggers refuse: they have no scheduled moments to add to, exclude, bound, shift or count.
CALENDAR_FIELDS = ("cron_expressions", "exclude_cron", "exclude_dates", "start_at", "end_at", "jitter_seconds",
                   "max_runs")


class Absence(SpecModel):
    """``scheduleConfig.absence``: run once for each tumbling window of ``withinSeconds`` (from the
    Trigger's activeSince) in which fewer than ``fewerThan`` matching events arrived."""

    within_seconds: int = Field(ge=ABSENCE_MIN_SECONDS, le=MAX_SECONDS)
    fewer_than: int = Field(ge=1, le=1_000_000_000)


class CompoundPart(SpecModel):
    """One part of a compound Trigger: another Trigger of the same namespace, by name only (no
    namespace can be named, so no part lies outside the compound's own)."""

    trigger: str = Field(pattern=OBJECT_NAME, max_length=NAME_MAX_LENGTH)


class ScheduleConfig(SpecModel):
    # cron
    cron_expression: str | None = Field(default=None, max_length=CRON_EXPRESSION_MAX_LENGTH)
    # More cron lines: the schedule is the union with cronExpression (a moment two lines share runs
    # once). One timezone for all, as Argo CronWorkflow's `schedules`: lines in several zones are
    # several Triggers (whose Schedule column and Next Run then say which zone is which).
    cron_expressions: list[_CronLine] | None = Field(default=None, min_length=1, max_length=MAX_CRON_LINES)
    timezone: str = Field(default="UTC", max_length=TIMEZONE_MAX_LENGTH)
    # interval
    interval_seconds: int | None = Field(default=None, ge=1, le=MAX_SECONDS)
    start_immediately: bool = False
    # cron and interval: the calendar (timemath/calendar.py; docs/schedules.md). Exclusions and the
    # window apply to the nominal moment, before the jitter shifts it.
    exclude_cron: list[_CronLine] | None = Field(default=None, max_length=MAX_CRON_LINES)  # in `timezone`
    exclude_dates: list[_Date] | None = Field(default=None, max_length=MAX_EXCLUDE_DATES)  # whole days in `timezone`
    start_at: AwareDatetime | None = None  # moments m with startAt <= m < endAt
    end_at: AwareDatetime | None = None  # exclusive
    jitter_seconds: int = Field(default=0, ge=0, le=MAX_JITTER_SECONDS)
    # The run budget: after this many scheduled runs the Trigger is finished.
    max_runs: int | None = Field(default=None, ge=1, le=MAX_RUNS)
    # event
    event_type: str | None = Field(default=None, min_length=1, max_length=EVENT_TYPE_MAX_LENGTH)
    event_threshold: int | None = Field(default=None, ge=1)
    collection_id: str | None = Field(default=None, max_length=COLLECTION_ID_MAX_LENGTH)
    cooldown_seconds: int = Field(default=0, ge=0, le=MAX_SECONDS)
    # model/filters.py: CloudEvents Subscriptions API dialects, bounded in all (check_filters)
    filters: list[dict[str, Any]] | None = Field(default=None, max_length=MAX_FILTERS)
    window_seconds: int | None = Field(default=None, ge=1, le=MAX_SECONDS)
    # Per-key counting (events/keys.py): each value of this attribute has its own counter, window
    # and cooldown, and its own runs; maxKeys bounds the values followed at once (default 100).
    group_by: str | None = Field(default=None, max_length=20, pattern=ATTRIBUTE_NAME)
    max_keys: int | None = Field(default=None, ge=1, le=MAX_KEYS_LIMIT)
    # Fires once per silent window instead of at a threshold (events/absence.py).
    absence: Absence | None = None
    # conditional
    condition_type: ConditionType | None = None
    metric: str | None = Field(default=None, min_length=1, max_length=METRIC_MAX_LENGTH)
    threshold: float | None = Field(default=None, allow_inf_nan=False)
    comparison: str = ">"
    check_interval_seconds: int | None = Field(default=None, ge=1, le=MAX_SECONDS)
    source: ConditionSource | None = None  # None: the action type's default (jobs/catalog.py)
    # compound (core/firing/compound.py): fires when `require` of the parts ("all", the default;
    # "any"; or a number) fired within the last withinSeconds; each part's firing is used once.
    parts: list[CompoundPart] | None = Field(default=None, min_length=MIN_PARTS, max_length=MAX_PARTS)
    require: int | str | None = None  # checked in TriggerSpec._compound_fields (the field and the reason)
    within_seconds: int | None = Field(default=None, ge=1, le=MAX_SECONDS)

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

    @field_validator("exclude_dates")
    @classmethod
    def _real_dates(cls, value: list[str] | None) -> list[str] | None:
        for index, text in enumerate(value or ()):
            try:
                dt.date.fromisoformat(text)
            except ValueError:
                raise SpecError(f"spec.scheduleConfig.excludeDates[{index}]",
                                f"{text!r} is not a date (YYYY-MM-DD)") from None
        return value

    @model_validator(mode="after")
    def _window_not_empty(self) -> ScheduleConfig:
        if self.start_at is not None and self.end_at is not None and self.end_at <= self.start_at:
            raise SpecError("spec.scheduleConfig.endAt", f"must be after startAt ({self.start_at.isoformat()}): "
                            "the window holds the moments m with startAt <= m < endAt")
        return self

    @field_validator("group_by", mode="before")
    @classmethod
    def _attribute_name(cls, value: Any) -> Any:
        if isinstance(value, str) and not re.fullmatch(ATTRIBUTE_NAME, value):
            raise SpecError("spec.scheduleConfig.groupBy", f"{value[:40]!r} is no CloudEvents attribute name: "
                            "lower-case letters a-z and digits 0-9, 1 to 20 characters (e.g. collectionid, subject)")
        return value

    @field_validator("absence", mode="before")
    @classmethod
    def _absence_fillable(cls, value: Any) -> Any:
        within = value.get("withinSeconds", value.get("within_seconds")) if isinstance(value, dict) else None
        if isinstance(within, int) and not isinstance(within, bool) and 0 < within < ABSENCE_MIN_SECONDS:
            raise SpecError("spec.scheduleConfig.absence.withinSeconds",
                            f"{within} s is shorter than {ABSENCE_MIN_SECONDS} s: the window is counted in one-second "
                            "steps and must hold 60 of them for its count to mean anything")
        return value

    @field_validator("filters")
    @classmethod
    def _filters_well_formed(cls, value: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
        if value is not None:
            check_filters(value, "spec.scheduleConfig.filters")
        return value


_REQUIRED: dict[TriggerType, tuple[str, ...]] = {
    TriggerType.CRON: (),  # cronExpression or cronExpressions: TriggerSpec._type_fields_present
    TriggerType.INTERVAL: ("interval_seconds",),
    TriggerType.EVENT: ("event_type",),  # and eventThreshold or absence: TriggerSpec._type_fields_present
    # No source: a conditional Trigger without one reads its action type's default from the admin's
    # action catalog (jobs/catalog.py); the controller, which has the catalog, decides (Invalid,
    # naming spec.scheduleConfig.source, when there is none).
    TriggerType.CONDITIONAL: ("condition_type", "metric", "threshold", "check_interval_seconds"),
    TriggerType.COMPOUND: ("parts", "within_seconds"),
}


class TriggerSpec(SpecModel):
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
    # Where the seed's eight lifecycle events go (model/notify.py, docs/notifications.md).
    notifications: Notifications | None = None

    @model_validator(mode="after")
    def _type_fields_present(self) -> TriggerSpec:
        config = self.schedule_config
        for name in _REQUIRED[self.trigger_type]:
            if getattr(config, name) is None:
                raise ValueError(f"scheduleConfig.{to_camel(name)} is required when triggerType is "
                                 f"{self.trigger_type.value!r}")
        if self.trigger_type is TriggerType.CRON and config.cron_expression is None and not config.cron_expressions:
            raise ValueError("scheduleConfig.cronExpression is required when triggerType is 'cron' "
                             "(or cronExpressions, or both)")
        if self.trigger_type is TriggerType.EVENT:
            _event_fields(config)
        elif config.group_by is not None or config.max_keys is not None or config.absence is not None:
            name = "groupBy" if config.group_by is not None else "maxKeys" if config.max_keys is not None else "absence"
            raise SpecError(f"spec.scheduleConfig.{name}", f"applies only to event Triggers, not "
                            f"{self.trigger_type.value!r} ones")
        _compound_fields(self.trigger_type, config)
        if not self.is_time_based():
            for name in CALENDAR_FIELDS:
                if getattr(config, name) not in (None, 0):
                    raise SpecError(f"spec.scheduleConfig.{to_camel(name)}",
                                    f"applies only to cron and interval Triggers, not {self.trigger_type.value!r} "
                                    "ones: they have no scheduled moments")
        return self

    @property
    def starting_deadline(self) -> dt.timedelta | None:
        if self.starting_deadline_seconds is None:
            return None
        return dt.timedelta(seconds=self.starting_deadline_seconds)

    def is_time_based(self) -> bool:
        return self.trigger_type in TIME_BASED


def _event_fields(config: ScheduleConfig) -> None:
    """An event Trigger fires at a threshold or on absence, never both: one counter, cooldown and
    firing number cannot mean "many arrived" and "few arrived" at once (two Triggers say both)."""
    if (config.event_threshold is None) == (config.absence is None):
        raise SpecError("spec.scheduleConfig.eventThreshold", "exactly one of eventThreshold and absence is "
                        "required when triggerType is 'event'" + (" (a Trigger fires on many events or on few, "
                                                                 "not both: make two Triggers)"
                                                                 if config.absence is not None else ""))
    if config.absence is not None:
        for name, why in (("window_seconds", "absence has its own window, withinSeconds"),
                          ("cooldown_seconds", "absence fires at most once per window already")):
            if getattr(config, name):
                raise SpecError(f"spec.scheduleConfig.{to_camel(name)}", f"does not apply with absence: {why}")
    if config.max_keys is not None and config.group_by is None:
        raise SpecError("spec.scheduleConfig.maxKeys", "applies only with groupBy (it bounds the keys followed)")
    if config.group_by is not None:
        for field, value in (("eventThreshold", config.event_threshold),
                             ("absence.fewerThan", config.absence.fewer_than if config.absence else None)):
            if value is not None and value > KEY_COUNT_MAX:
                raise SpecError(f"spec.scheduleConfig.{field}", f"must be at most {KEY_COUNT_MAX} with groupBy: a "
                                "key's count stops there, so the key could never reach it")


def _compound_fields(trigger_type: TriggerType, config: ScheduleConfig) -> None:
    """parts, require and withinSeconds belong to compound Triggers; the parts are distinct and
    ``require`` is "all", "any" or a number of them. A part naming the Trigger itself needs the
    Trigger's name: `check_own_part`."""
    if trigger_type is not TriggerType.COMPOUND:
        for name in ("parts", "require", "within_seconds"):
            if getattr(config, name) is not None:
                raise SpecError(f"spec.scheduleConfig.{to_camel(name)}", "applies only to compound Triggers, not "
                                f"{trigger_type.value!r} ones")
        return
    parts = config.parts or []
    seen: dict[str, int] = {}
    for index, part in enumerate(parts):
        if part.trigger in seen:
            raise SpecError(f"spec.scheduleConfig.parts[{index}].trigger", f"names {part.trigger!r} again (as "
                            f"parts[{seen[part.trigger]}]): each part is a different Trigger")
        seen[part.trigger] = index
    require = config.require
    if isinstance(require, bool) or (isinstance(require, str) and require not in REQUIRE_WORDS):
        raise SpecError("spec.scheduleConfig.require", f"must be 'all', 'any' or a number of parts, not {require!r}")
    if isinstance(require, int) and not 1 <= require <= len(parts):
        raise SpecError("spec.scheduleConfig.require", f"{require} is not between 1 and the number of parts "
                        f"({len(parts)})")


def required_parts(config: ScheduleConfig) -> int:
    """How many parts must have fired within the window for a compound Trigger to fire."""
    parts = len(config.parts or ())
    if config.require is None or config.require == "all":
        return parts
    return 1 if config.require == "any" else int(config.require)


def check_own_part(spec: TriggerSpec, name: str) -> None:
    """Raises `SpecError` when a compound Trigger named ``name`` names itself as a part (the
    webhook refuses it; the controller makes such a Trigger Invalid). Cycles through other
    compounds are the controller's to find (core/firing/compound.py): they span several objects."""
    for index, part in enumerate(spec.schedule_config.parts or ()) if name else ():
        if part.trigger == name:
            raise SpecError(f"spec.scheduleConfig.parts[{index}].trigger",
                            "a compound Trigger cannot be its own part")


def parse_spec(raw: dict[str, Any]) -> TriggerSpec:
    """Validates a raw spec; raises `SpecError` naming the first bad field."""
    try:
        spec = TriggerSpec.model_validate(raw)
    except ValidationError as error:
        first = error.errors()[0]
        cause = (first.get("ctx") or {}).get("error")
        if isinstance(cause, FilterError):  # names the filter itself, deeper than pydantic's location
            raise SpecError(cause.path, cause.reason) from None
        if isinstance(cause, SpecError):  # a validator that knows the exact field (a list's item)
            raise SpecError(cause.field, cause.reason) from None
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
    if spec.is_time_based():
        calendar(spec)  # raises SpecError naming the expression, exclusion or zone that is unusable
    return spec


@dataclass(frozen=True)
class Calendar:
    """A time-based Trigger's schedule settings, parsed: its cron lines (none for an interval
    Trigger), its zone, its exclusions."""

    lines: tuple[CronSchedule, ...]
    zone: ZoneInfo
    exclude_cron: tuple[CronExpression, ...]
    exclude_dates: frozenset[dt.date]


def _cron_fields(spec: TriggerSpec) -> list[tuple[str, str]]:
    """Each cron line with the path of the field that holds it."""
    config = spec.schedule_config
    fields = [("spec.scheduleConfig.cronExpression", config.cron_expression)] \
        if config.cron_expression is not None else []
    return fields + [(f"spec.scheduleConfig.cronExpressions[{i}]", text)
                     for i, text in enumerate(config.cron_expressions or ())]


def _expression(field: str, text: str) -> CronExpression:
    try:
        return CronExpression.parse(text)
    except CronError as error:
        raise SpecError(field, str(error)) from None


def calendar(spec: TriggerSpec) -> Calendar:
    """Parses the cron lines, the zone and the exclusions; raises `SpecError` naming the line
    (``spec.scheduleConfig.excludeCron[1]``) or the zone that cannot be used."""
    config = spec.schedule_config
    expressions = [_expression(field, text) for field, text in _cron_fields(spec)] \
        if spec.trigger_type is TriggerType.CRON else []
    try:
        zone = load_zone(config.timezone)
    except CronError as error:
        raise SpecError(f"spec.scheduleConfig.{error.field}", str(error)) from None
    excluded = tuple(_expression(f"spec.scheduleConfig.excludeCron[{i}]", text)
                     for i, text in enumerate(config.exclude_cron or ()))
    return Calendar(lines=tuple(CronSchedule(e, zone) for e in expressions), zone=zone, exclude_cron=excluded,
                    exclude_dates=frozenset(dt.date.fromisoformat(d) for d in config.exclude_dates or ()))


def cron_schedule(spec: TriggerSpec) -> CronSchedule:
    """The first cron line alone, in the Trigger's zone (the union and the calendar: `time_schedule`)."""
    return calendar(spec).lines[0]


# Where a search that must name a cause starts when the caller has no clock (see `never_fires`).
_NO_CLOCK = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)


def never_fires(spec: TriggerSpec, now: dt.datetime | None = None) -> str:
    """Why a valid time-based Trigger has no moment to run: the webhook's refusal and the
    controller's NeverFires message, in one wording, naming the cause: the cron lines themselves,
    the exclusions that remove every moment, or the window (ended, or holding no moment).

    ``now`` tells an ended window from an empty one; without it the search starts at startAt.
    A search too costly to end says so instead (`_Bounded`)."""
    try:
        return _never_fires(spec, now)
    except SpecError as error:
        return str(error)


def _never_fires(spec: TriggerSpec, now: dt.datetime | None) -> str:
    config = spec.schedule_config
    cal = calendar(spec)
    start = max(now, config.start_at) if now and config.start_at else now or config.start_at or _NO_CLOCK
    if cal.lines and compose(cal.lines, zone=cal.zone).next_after(start) is None:
        fields = _cron_fields(spec)
        if len(fields) == 1:
            field, text = fields[0]
            return f"{field}: {text!r} has no moment within {SEARCH_SPAN} in {config.timezone}, so it never fires"
        return (f"spec.scheduleConfig.cronExpressions: none of the {len(fields)} cron lines has a moment within "
                f"{SEARCH_SPAN} in {config.timezone}, so the Trigger never fires")
    unbounded = time_schedule(spec.model_copy(update={"schedule_config": config.model_copy(
        update={"start_at": None, "end_at": None})}), origin=start, first_run=True)
    assert unbounded is not None
    if (cal.exclude_cron or cal.exclude_dates) and unbounded.next_after(start) is None:
        field = "excludeCron" if cal.exclude_cron else "excludeDates"
        return (f"spec.scheduleConfig.{field}: the exclusions (excludeCron, excludeDates) remove every moment "
                f"within {SEARCH_SPAN} in {config.timezone}, so the Trigger never fires")
    if config.end_at is not None and now is not None and config.end_at <= now:
        return f"spec.scheduleConfig.endAt: the active window ended at {config.end_at.isoformat()}: no moment remains"
    return (f"spec.scheduleConfig.endAt: no moment falls in the active window "
            f"[{config.start_at.isoformat() if config.start_at else 'now'}, "
            f"{config.end_at.isoformat() if config.end_at else 'never'}) within {SEARCH_SPAN}")


def admission_refusal(spec: TriggerSpec, now: dt.datetime) -> str | None:
    """The never-fires refusal of a time-based Trigger applied at ``now``, or None. A window that
    has already ended is no refusal: a Trigger may be applied after its window (a GitOps repository
    keeps last month's); it then simply runs nothing."""
    if not spec.is_time_based():
        return None
    schedule = time_schedule(spec, origin=now, first_run=True)
    assert schedule is not None
    try:
        if schedule.next_after(now) is not None:
            return None
    except SpecError as error:  # too costly to evaluate (`_Bounded`)
        return str(error)
    message = never_fires(spec, now)
    return None if message.startswith("spec.scheduleConfig.endAt: the active window ended") else message


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _calendar_fingerprint(spec: TriggerSpec) -> str:
    """The calendar's part of `schedule_fingerprint`: empty without one, so a Trigger of before
    issue 22 keeps the fingerprint it had (and its cursor)."""
    config = spec.schedule_config
    parts: list[str] = []
    if config.exclude_cron:
        parts.append("except " + " | ".join(_one_line(c) for c in config.exclude_cron))
    if config.exclude_dates:
        dates = sorted(set(config.exclude_dates))
        parts.append("except dates " + (",".join(dates) if len(dates) <= 3 else
                                        f"{len(dates)} #{hashlib.sha256(','.join(dates).encode()).hexdigest()[:8]}"))
    if (config.exclude_cron or config.exclude_dates) and spec.trigger_type is TriggerType.INTERVAL:
        parts.append(f"in {config.timezone}")  # a cron Trigger says its zone already
    if config.start_at is not None:
        parts.append(f"from {config.start_at.astimezone(dt.UTC).isoformat()}")
    if config.end_at is not None:
        parts.append(f"until {config.end_at.astimezone(dt.UTC).isoformat()}")
    if config.jitter_seconds:
        parts.append(f"jitter {config.jitter_seconds}s")
    return "".join(f"; {p}" for p in parts)


def time_based_fingerprint(fingerprint: str | None) -> bool:
    """Whether a recorded ``status.observedSchedule`` is a cron or interval Trigger's: the status
    written with it holds that type's cursor and next moment (its first word is the type)."""
    return fingerprint is not None and fingerprint.split(" ", 1)[0] in TIME_BASED


def schedule_fingerprint(spec: TriggerSpec) -> str:
    """The schedule as people read it (``status.observedSchedule``, the Schedule column):
    ``cron 0 2 * * * Europe/Berlin``, ``cron 0 9 * * 1-5 | 0 12 * * 6 UTC; except * * 25 12 *;
    jitter 30s``, ``interval 3600s``, ``event documents_added x100``,
    ``drift cosine_drift > 0.15 every 300s``. Every setting that moves a moment is in it (maxRuns
    is not: a budget changes how many run, not when), so changing one starts the schedule afresh."""
    config = spec.schedule_config
    if spec.trigger_type is TriggerType.CRON:
        lines = " | ".join(_one_line(text) for _, text in _cron_fields(spec))
        return f"cron {lines} {config.timezone}{_calendar_fingerprint(spec)}"
    if spec.trigger_type is TriggerType.INTERVAL:
        return f"interval {config.interval_seconds}s{_calendar_fingerprint(spec)}"
    if spec.trigger_type is TriggerType.EVENT:
        collection = f" in {config.collection_id}" if config.collection_id else ""
        grouped = f" by {config.group_by}" if config.group_by else ""
        if config.absence is not None:
            return (f"event {config.event_type}{collection}{grouped} fewer than {config.absence.fewer_than} "
                    f"in {config.absence.within_seconds}s")
        return f"event {config.event_type}{collection}{grouped} x{config.event_threshold}"
    if spec.trigger_type is TriggerType.COMPOUND:
        require = config.require if isinstance(config.require, int) else config.require or "all"
        names = ", ".join(p.trigger for p in config.parts or ())
        return f"compound {require} of {names} within {config.within_seconds}s"
    compared = ">" if config.condition_type is ConditionType.DRIFT else config.comparison
    every = config.check_interval_seconds
    return f"{config.condition_type} {config.metric} {compared} {config.threshold} every {every}s"


def _meanings(lines: str) -> frozenset[tuple[object, ...]]:
    return frozenset(CronExpression.parse(_one_line(line)).meaning for line in lines.split(" | "))


def same_schedule(recorded: str, spec: TriggerSpec) -> bool:
    """Whether ``recorded`` (an earlier `schedule_fingerprint`) makes the same moments as the spec:
    compared by meaning, so spacing, ``0-6`` for ``*``, ``Etc/UTC`` for ``UTC`` or the order of the
    cron lines and exclusions keep the cursor."""
    current = schedule_fingerprint(spec)
    if recorded == current:
        return True
    if not recorded.startswith("cron ") or not current.startswith("cron "):
        return False
    try:
        old_head, *old_rest = recorded.split("; ")
        new_head, *new_rest = current.split("; ")
        old_lines, old_zone = old_head.removeprefix("cron ").rsplit(" ", 1)
        new_lines, new_zone = new_head.removeprefix("cron ").rsplit(" ", 1)
        if len(old_rest) != len(new_rest) or _meanings(old_lines) != _meanings(new_lines) \
                or zone_identity(old_zone) != zone_identity(new_zone):
            return False
        for old, new in zip(old_rest, new_rest, strict=True):
            if old.startswith("except ") and not old.startswith("except dates ") \
                    and new.startswith("except ") and not new.startswith("except dates "):
                if _meanings(old.removeprefix("except ")) != _meanings(new.removeprefix("except ")):
                    return False
            elif old != new:
                return False
        return True
    except (CronError, SpecError, ValueError):
        return False


@dataclass(frozen=True)
class _Bounded:
    """A schedule with exclusions, whose search may stop as too costly (timemath/calendar.py,
    `TooCostly`): that is then a `SpecError` naming ``spec.scheduleConfig.excludeCron``, which the
    webhook refuses and the controller makes Invalid, as any other invalid spec."""

    schedule: Schedule

    def next_after(self, after: dt.datetime) -> dt.datetime | None:
        try:
            return self.schedule.next_after(after)
        except TooCostly as error:
            raise SpecError("spec.scheduleConfig.excludeCron",
                            f"the schedule less these exclusions is {error}: exclude whole hours or days, "
                            "or what the cron lines make less often") from None


def time_schedule(spec: TriggerSpec, *, origin: dt.datetime, first_run: bool,
                  trigger: tuple[str, str] | None = None) -> Schedule | None:
    """The schedule of a cron or interval Trigger; None for event and conditional Triggers.

    ``origin`` anchors interval lattices (the last scheduled moment, or when the Trigger became
    active); ``first_run`` says no moment was scheduled yet, so ``startImmediately`` applies. Before
    the first run a startAt after the origin anchors the lattice instead: an interval Trigger waiting
    for its window runs every period from startAt, and with startImmediately first at startAt.
    ``trigger`` is the Trigger's (namespace, name), the seed of its jitter (None: no jitter, for a
    spec that is no object yet).

    The calendar (timemath/calendar.py) applies to both: the union of the cron lines (or the
    lattice), less the exclusions, within [startAt, endAt), shifted by the jitter. The shifted
    moment is the moment: the Job name, lastScheduleTime and the starting deadline use it. An
    interval's origin that is a moment (not ``first_run``) is already shifted, so the lattice is
    anchored at it less the offset: each moment is shifted once, and the lattice never drifts.
    With exclusions, a search too costly to end raises `SpecError` (`_Bounded`).
    """
    if not spec.is_time_based():
        return None
    config = spec.schedule_config
    cal = calendar(spec)
    offset = jitter_offset(trigger[0], trigger[1], config.jitter_seconds) if trigger else dt.timedelta(0)
    lines: tuple[Schedule, ...] = cal.lines
    if spec.trigger_type is TriggerType.INTERVAL:
        assert config.interval_seconds is not None
        if first_run and config.start_at is not None:
            origin = max(origin, config.start_at)
        lines = (IntervalSchedule(origin=origin if first_run else origin - offset,
                                  period=dt.timedelta(seconds=config.interval_seconds),
                                  include_origin=first_run and config.start_immediately),)
    schedule = compose(lines, zone=cal.zone, exclude_cron=cal.exclude_cron, exclude_dates=cal.exclude_dates,
                       start=config.start_at, end=config.end_at, offset=offset)
    return _Bounded(schedule) if cal.exclude_cron else schedule


@dataclass(frozen=True)
class LiveSchedule:
    """A Trigger's schedule as the controller runs it from its status (`live_schedule`)."""

    schedule: Schedule
    earliest: dt.datetime  # moments after this are still to handle
    first_run: bool  # no moment was scheduled yet (startImmediately applies)
    look_from: dt.datetime  # where the search for due moments starts (just before an origin that is one)


def live_schedule(spec: TriggerSpec, *, since: dt.datetime, cursor: dt.datetime | None,
                  trigger: tuple[str, str]) -> LiveSchedule:
    """The one rule of where a running Trigger's schedule stands, for the controller
    (core/firing/schedule.py) and the previews (``kubectl trigger next``): moments after the
    cursor (``status.lastScheduleTime``) or, before the first, from ``since`` (activeSince), the
    lattice of an interval anchored there, shifted by the Trigger's own jitter."""
    earliest = max(cursor, since) if cursor is not None else since
    first_run = cursor is None
    schedule = time_schedule(spec, origin=earliest, first_run=first_run, trigger=trigger)
    assert schedule is not None, "a cron or interval Trigger"
    # startImmediately makes the origin itself a moment, so look from just before it.
    look_from = earliest - dt.timedelta(microseconds=1) if first_run else earliest
    return LiveSchedule(schedule, earliest, first_run, look_from)


def jitter_edit(recorded: str, spec: TriggerSpec) -> int | None:
    """When ``recorded`` (an earlier `schedule_fingerprint`) differs from the spec's schedule only
    in jitterSeconds, the jitter it had (0: none); otherwise None. A jitter moves each nominal
    moment, not the schedule: the controller keeps its place (core/ready.py, docs/schedules.md)."""
    if not spec.is_time_based():
        return None
    match = re.search(r"; jitter (\d+)s$", recorded)
    old = int(match.group(1)) if match else 0
    if old == spec.schedule_config.jitter_seconds:
        return None
    unjittered = spec.model_copy(update={"schedule_config": spec.schedule_config.model_copy(
        update={"jitter_seconds": 0})})
    return old if same_schedule(recorded[:match.start()] if match else recorded, unjittered) else None
