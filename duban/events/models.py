"""Pydantic models of the event contracts, one per event type and version.

Each model mirrors the JSON Schema of the same type in contracts/events/ (tests keep the two in
step). The schema is the published contract; the model is how Python code reads and builds events.
Both are closed: an unknown attribute or data field is an error, never silently dropped.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Literal, get_args

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)

SCHEMA_ID_PREFIX = "urn:duban:contracts:events:"

# Patterns use [0-9] rather than \d: in Python and Rust regexes \d also matches non-ASCII digits. The rule holds
# for every pattern of the code (tests/test_architecture.py).
TASK_ID_PATTERN = r"^T(0[1-9]|1[0-9]|2[0-8])$"
MILESTONE_ID_PATTERN = r"^T[0-9]{2}-M[0-9]+$"
CASE_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"
INDICATOR_ID_PATTERN = r"^[a-z][a-z0-9_]{2,63}$"
EVENT_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"
DEPARTMENT_CODE_PATTERN = r"^[a-z0-9-]+$"
# A department's events carry the source /departments/<code>: intake checks it against the key that posts them.
DEPARTMENT_SOURCE_PREFIX = "/departments/"
DEPARTMENT_SOURCE_PATTERN = rf"^{DEPARTMENT_SOURCE_PREFIX}[a-z0-9-]+$"
STEP_PATTERN = r"^[a-z0-9_]{1,64}$"
PERIOD_PATTERN = r"^[0-9]{4}(-Q[1-4]|-(0[1-9]|1[0-2]))?$"
CIVIL_DATE_PATTERN = r"^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$"
RFC3339_PATTERN = (
    r"^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"
    r"T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,6})?"
    r"(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$"
)
# Free text holds any character PostgreSQL and UTF-8 can: not NUL (text and jsonb refuse it) and
# no unpaired UTF-16 surrogate (no UTF-8 encoding exists for one; I-JSON, RFC 7493, forbids them).
STORABLE_TEXT_PATTERN = r"^[^\u0000\uD800-\uDFFF]*$"
# Absolute http(s) URL made of the characters RFC 3986 allows (non-ASCII must be percent-encoded).
HTTP_URL_PATTERN = r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?([/?#][A-Za-z0-9._~:/?#\[\]@!$&'()*+,;=%-]*)?$"

_RFC3339 = re.compile(RFC3339_PATTERN)
_UNSTORABLE = re.compile(r"[\u0000\uD800-\uDFFF]")


def schema_id(event_type: str) -> str:
    """The `$id` of the JSON Schema that describes a whole event of `event_type`."""
    return SCHEMA_ID_PREFIX + event_type


def data_schema_id(event_type: str) -> str:
    """The URI an event may carry in `dataschema`: the `data` part of its type's schema."""
    return schema_id(event_type) + "#data"


def _rfc3339(value: Any) -> Any:
    # Pydantic alone would also take "2021-09-30 09:15", unix timestamps and other ISO 8601
    # forms; the contract admits RFC 3339 text only, exactly as the JSON Schema does.
    if isinstance(value, str) and not _RFC3339.fullmatch(value):
        raise ValueError("must be an RFC 3339 date-time with a UTC offset, e.g. 2021-09-30T16:20:00+08:00")
    if not isinstance(value, (str, datetime)):
        raise ValueError("must be an RFC 3339 date-time string")
    return value


def _civil_date(value: Any) -> Any:
    # As for instants: the contract admits YYYY-MM-DD text only, not numbers or other ISO 8601 forms.
    if isinstance(value, date) or (isinstance(value, str) and re.fullmatch(CIVIL_DATE_PATTERN, value)):
        return value
    raise ValueError("must be a date as YYYY-MM-DD, e.g. 2021-09-30")


def _storable(value: str) -> str:
    # Checked in Python: pydantic's Rust regex engine cannot name surrogates (Rust strings hold none).
    if match := _UNSTORABLE.search(value):
        raise ValueError(f"holds {match[0]!r} at {match.start()}: NUL and unpaired surrogates cannot be stored")
    return value


def _free_text(max_length: int) -> Any:
    """A non-empty JSON string of at most `max_length` characters that storage can hold."""
    return Annotated[_text(max_length=max_length), AfterValidator(_storable),
                     Field(json_schema_extra={"pattern": STORABLE_TEXT_PATTERN})]


def _text(pattern: str | None = None, *, max_length: int | None = None) -> Any:
    """A non-empty JSON string (no coercion from numbers or bytes), optionally matching `pattern`."""
    min_length = None if pattern else 1  # every pattern here already needs a character
    return Annotated[str, StringConstraints(strict=True, pattern=pattern, min_length=min_length, max_length=max_length)]


# The json_schema_extra entries make the models' own JSON Schema (e.g. in a generated OpenAPI
# document) state the same constraints as contracts/events/, which the validators enforce.
Timestamp = Annotated[AwareDatetime, BeforeValidator(_rfc3339), Field(json_schema_extra={"pattern": RFC3339_PATTERN})]
EventId = _text(EVENT_ID_PATTERN)
TaskId = _text(TASK_ID_PATTERN)
MilestoneId = _text(MILESTONE_ID_PATTERN)
CaseId = _text(CASE_ID_PATTERN)
IndicatorId = _text(INDICATOR_ID_PATTERN)
DepartmentCode = _text(DEPARTMENT_CODE_PATTERN, max_length=64)
DepartmentSource = _text(DEPARTMENT_SOURCE_PATTERN, max_length=128)


def department_source(code: str) -> str:
    """The source of the events the department `code` sends."""
    return DEPARTMENT_SOURCE_PREFIX + code


def source_department(source: str) -> str:
    """The department code of a department event's source (a valid one is /departments/<code>)."""
    return source.removeprefix(DEPARTMENT_SOURCE_PREFIX)
StepCode = _text(STEP_PATTERN)
Period = _text(PERIOD_PATTERN)
HttpUrl = Annotated[_text(HTTP_URL_PATTERN, max_length=2048), Field(json_schema_extra={"format": "uri"})]
Note = _free_text(2000)
Reason = _free_text(500)
Reference = _free_text(128)  # the department's own case number, e.g. （2021）闽0102破7号
Title = _free_text(200)
StepName = _free_text(100)
Markup = _free_text(2_000_000)  # a rendered document, e.g. a bulletin's HTML
# A civil date as JSON text (YYYY-MM-DD), never a number or another ISO 8601 form.
CivilDate = Annotated[date, BeforeValidator(_civil_date), Field(json_schema_extra={"pattern": CIVIL_DATE_PATTERN})]
Percent = Annotated[int, Field(strict=True, ge=0, le=100)]
Count = Annotated[int, Field(strict=True, ge=0)]
Value = Annotated[float, Field(strict=True, allow_inf_nan=False)]


class CaseType(StrEnum):
    """Kinds of case an indicator measures; equal to the plan catalog's case types."""

    SERVICE_ITEM = "service_item"  # 政务服务事项
    COMPANY_STARTUP = "company_startup"  # 企业开办
    BUILDING_PERMIT = "building_permit"  # 建筑许可审批
    POWER_CONNECTION_LOW_VOLTAGE = "power_connection_low_voltage"  # 低压非居民用户办电
    EXPORT_TAX_REFUND = "export_tax_refund"  # 出口退税
    SIMPLE_BANKRUPTCY = "simple_bankruptcy"  # 简易破产案件


class TaskStatus(StrEnum):
    NOT_STARTED = "not_started"
    IN_PROGRESS = "in_progress"
    DONE = "done"
    BLOCKED = "blocked"


class PauseReason(StrEnum):
    """Why a case's clock stops; only these pauses are excluded from its duration."""

    SUPPLEMENT = "supplement"  # 补正材料
    HEARING = "hearing"  # 听证
    EXPERT_REVIEW = "expert_review"  # 专家评审
    PUBLIC_NOTICE = "public_notice"  # 公告
    INSPECTION = "inspection"  # 检验检测
    APPRAISAL = "appraisal"  # 鉴定
    TENDER = "tender"  # 招标拍卖


class CaseOutcome(StrEnum):
    COMPLETED = "completed"  # 办结
    REFUSED = "refused"  # 不予许可 / 不予受理


class IndicatorUnit(StrEnum):
    CALENDAR_DAYS = "calendar_days"
    WORKING_DAYS = "working_days"
    WORKING_HOURS = "working_hours"
    HOURS_PER_YEAR = "hours_per_year"
    STEPS = "steps"
    RATIO = "ratio"
    COUNT = "count"
    AREA_M2 = "area_m2"


class Light(StrEnum):
    GREEN = "green"
    YELLOW = "yellow"
    RED = "red"


class LightReason(StrEnum):
    ON_TRACK = "on_track"  # enough time left, or the unit caught up
    DEADLINE_NEAR = "deadline_near"  # little time left and not done
    PAST_DUE = "past_due"  # deadline passed and not done
    DONE = "done"


class MilestoneStatus(StrEnum):
    OPEN = "open"
    DONE = "done"
    OVERDUE = "overdue"


def _values(vocabulary: type[StrEnum]) -> Any:
    return Literal[tuple(member.value for member in vocabulary)]


# The same vocabularies as Literal types, for the models that show their values inline (the read APIs, in their
# OpenAPI documents) or hold plain strings.
TaskStatusValue = _values(TaskStatus)
LightValue = _values(Light)
LightReasonValue = _values(LightReason)
MilestoneStatusValue = _values(MilestoneStatus)
# The tracker's read API also shows a done report or completion the district office has not yet verified
# (decision 020); the events keep the vocabularies above.
AWAITING_VERIFICATION = "awaiting_verification"
TaskViewStatusValue = Literal[(*(member.value for member in TaskStatus), AWAITING_VERIFICATION)]
MilestoneViewStatusValue = Literal[(*(member.value for member in MilestoneStatus), AWAITING_VERIFICATION)]


class Closed(BaseModel):
    """Base of every contract model: unknown fields are errors, and null never stands for absent."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @field_validator("*", mode="before")
    @classmethod
    def _omit_rather_than_null(cls, value: Any, info: ValidationInfo) -> Any:
        # An optional field is omitted, not sent as null: one spelling per event keeps the
        # schemas closed and the stored events comparable. Required fields typed `X | None`
        # (a light's `from` before its first evaluation) still take null.
        if value is None and info.field_name is not None and not cls.model_fields[info.field_name].is_required():
            raise ValueError("omit the field instead of sending null")
        return value


class Event(Closed):
    """A CloudEvents 1.0 event in structured form; subclasses fix `type`, `subject` and `data`.

    Each concrete model's `type` literal is the one place its event type name is written; code
    names the type as `Model.TYPE` (and a tracker event's source as `Model.SOURCE`)."""

    TYPE: ClassVar[str]
    SOURCE: ClassVar[str]

    specversion: Literal["1.0"]
    id: EventId
    source: str
    type: str
    subject: str
    # When it happened at the source (event time): the clock that SLAs use, not the time of receipt.
    time: Timestamp
    datacontenttype: Literal["application/json"] = "application/json"
    dataschema: str | None = None
    data: Closed

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        for attribute, name in (("TYPE", "type"), ("SOURCE", "source")):
            if values := get_args(cls.model_fields[name].annotation):
                setattr(cls, attribute, values[0])

    @model_validator(mode="after")
    def _dataschema_names_this_contract(self) -> Event:
        if self.dataschema is not None and self.dataschema != data_schema_id(self.type):
            raise ValueError(f"dataschema must be {data_schema_id(self.type)!r} when present")
        return self


class DepartmentEvent(Event):
    """An event a department system reports; `source` names the department."""

    source: DepartmentSource


class TrackerEvent(Event):
    """A change of state the tracker announces after committing it."""

    source: Literal["/services/tracker"]


def event_type(model: type[Event]) -> str:
    """The CloudEvents `type` a model stands for, read from its `type` literal."""
    return model.TYPE


# --- Department events: tasks ------------------------------------------------------------------


class TaskProgressReportedData(Closed):
    status: TaskStatus
    percent: Percent
    note: Note | None = None
    evidence_url: HttpUrl | None = None

    @model_validator(mode="after")
    def _done_means_complete(self) -> TaskProgressReportedData:
        if self.status is TaskStatus.DONE and self.percent != 100:
            raise ValueError("a task reported done must be at 100 percent")
        return self


class TaskProgressReported(DepartmentEvent):
    type: Literal["duban.task.progress-reported.v1"]
    subject: TaskId
    data: TaskProgressReportedData


class TaskMilestoneCompletedData(Closed):
    milestone_id: MilestoneId
    note: Note | None = None
    evidence_url: HttpUrl | None = None


class TaskMilestoneCompleted(DepartmentEvent):
    type: Literal["duban.task.milestone-completed.v1"]
    subject: TaskId
    data: TaskMilestoneCompletedData


# --- Department events: cases ------------------------------------------------------------------


class CaseOpenedData(Closed):
    case_type: CaseType
    reference: Reference | None = None
    title: Title | None = None


class CaseOpened(DepartmentEvent):
    type: Literal["duban.case.opened.v1"]
    subject: CaseId
    data: CaseOpenedData


class CaseStepCompletedData(Closed):
    case_type: CaseType
    step: StepCode
    step_name: StepName | None = None


class CaseStepCompleted(DepartmentEvent):
    type: Literal["duban.case.step-completed.v1"]
    subject: CaseId
    data: CaseStepCompletedData


class CasePausedData(Closed):
    case_type: CaseType
    reason: PauseReason
    note: Note | None = None


class CasePaused(DepartmentEvent):
    type: Literal["duban.case.paused.v1"]
    subject: CaseId
    data: CasePausedData


class CaseResumedData(Closed):
    case_type: CaseType
    reason: PauseReason  # the reason of the pause this resume ends


class CaseResumed(DepartmentEvent):
    type: Literal["duban.case.resumed.v1"]
    subject: CaseId
    data: CaseResumedData


class CaseClosedData(Closed):
    case_type: CaseType
    outcome: CaseOutcome
    handled_instantly: StrictBool  # 即办件
    trips: Count  # trips the applicant made to a service hall; 0 = 一趟不用跑


class CaseClosed(DepartmentEvent):
    type: Literal["duban.case.closed.v1"]
    subject: CaseId
    data: CaseClosedData


class CaseCancelledData(Closed):
    case_type: CaseType
    reason: Reason


class CaseCancelled(DepartmentEvent):
    type: Literal["duban.case.cancelled.v1"]
    subject: CaseId
    data: CaseCancelledData


# --- Department events: indicators -------------------------------------------------------------


class IndicatorValueReportedData(Closed):
    period: Period
    value: Value
    unit: IndicatorUnit
    note: Note | None = None


class IndicatorValueReported(DepartmentEvent):
    type: Literal["duban.indicator.value-reported.v1"]
    subject: IndicatorId
    data: IndicatorValueReportedData


# --- Tracker change events ---------------------------------------------------------------------


class TaskLightChangedData(Closed):
    from_: Light | None = Field(alias="from")  # null on a task's first evaluation
    to: Light
    reason: LightReason
    as_of: Timestamp  # the instant the light was evaluated for


class TaskLightChanged(TrackerEvent):
    type: Literal["duban.tracker.task.light-changed.v1"]
    subject: TaskId
    data: TaskLightChangedData


class TaskUpdatedData(Closed):
    status: TaskStatus
    percent: Percent
    light: Light
    reported_at: Timestamp  # event time of the report that is now the current state


class TaskUpdated(TrackerEvent):
    type: Literal["duban.tracker.task.updated.v1"]
    subject: TaskId
    data: TaskUpdatedData


class MilestoneStatusChangedData(Closed):
    milestone_id: MilestoneId
    from_: MilestoneStatus | None = Field(alias="from")  # null when the tracker first records it
    to: MilestoneStatus
    as_of: Timestamp


class MilestoneStatusChanged(TrackerEvent):
    type: Literal["duban.tracker.milestone.status-changed.v1"]
    subject: TaskId  # milestones belong to their task's aggregate, so they share its Kafka key
    data: MilestoneStatusChangedData


class MilestoneExtensionDecidedData(Closed):
    extension_id: Annotated[int, Field(strict=True, ge=1)]
    milestone_id: MilestoneId
    original_due: CivilDate  # the plan's due date of the occurrence
    requested_due: CivilDate
    decision: Literal["approved", "rejected"]
    due: CivilDate  # the deadline in force after the decision
    reason: Annotated[str, StringConstraints(strict=True, min_length=1)]
    decided_by: Annotated[str, StringConstraints(strict=True, min_length=1)]
    as_of: Timestamp


class MilestoneExtensionDecided(TrackerEvent):
    type: Literal["duban.tracker.milestone.extension-decided.v1"]
    subject: TaskId  # milestones belong to their task's aggregate, so they share its Kafka key
    data: MilestoneExtensionDecidedData


class CompletionRequestData(Closed):
    """A "done" awaiting the district office's verification (办结销号): a task's done report, or a
    milestone completion (then milestone_id and due name the occurrence it completes)."""

    milestone_id: MilestoneId | None = None
    due: CivilDate | None = None  # the plan's due date of the occurrence
    request_source: DepartmentSource  # the report or completion awaiting: its source and id
    request_id: EventId
    requested_at: Timestamp  # its event time
    grace_until: CivilDate  # unverified, the item is not red through this date
    as_of: Timestamp


class CompletionAwaitingVerificationData(CompletionRequestData):
    deadline: CivilDate | None = None  # the occurrence's deadline in force (an approved extension's date)


class CompletionAwaitingVerification(TrackerEvent):
    type: Literal["duban.tracker.completion.awaiting-verification.v1"]
    subject: TaskId
    data: CompletionAwaitingVerificationData


class CompletionVerifiedData(CompletionRequestData):
    decided_by: Annotated[str, StringConstraints(strict=True, min_length=1)]
    reason: Annotated[str, StringConstraints(strict=True, min_length=1)] | None = None


class CompletionVerified(TrackerEvent):
    type: Literal["duban.tracker.completion.verified.v1"]
    subject: TaskId
    data: CompletionVerifiedData


class CompletionReturnedData(CompletionRequestData):
    decided_by: Annotated[str, StringConstraints(strict=True, min_length=1)]
    reason: Annotated[str, StringConstraints(strict=True, min_length=1)]


class CompletionReturned(TrackerEvent):
    type: Literal["duban.tracker.completion.returned.v1"]
    subject: TaskId
    data: CompletionReturnedData


class TrackedCaseOpenedData(Closed):
    department: DepartmentCode
    case_type: CaseType
    opened_at: Timestamp
    reference: Reference | None = None
    title: Title | None = None


class TrackedCaseOpened(TrackerEvent):
    type: Literal["duban.tracker.case.opened.v1"]
    subject: CaseId
    data: TrackedCaseOpenedData


class PausedInterval(Closed):
    from_: Timestamp = Field(alias="from")
    to: Timestamp
    reason: PauseReason


class TrackedCaseClosedData(Closed):
    department: DepartmentCode
    case_type: CaseType
    outcome: CaseOutcome
    opened_at: Timestamp
    closed_at: Timestamp
    handled_instantly: StrictBool
    trips: Count
    steps: Count  # steps completed, i.e. duban.case.step-completed.v1 events applied
    paused_intervals: list[PausedInterval]


class TrackedCaseClosed(TrackerEvent):
    type: Literal["duban.tracker.case.closed.v1"]
    subject: CaseId
    data: TrackedCaseClosedData


class TrackedCaseCancelledData(Closed):
    department: DepartmentCode
    case_type: CaseType
    opened_at: Timestamp
    cancelled_at: Timestamp
    reason: Reason


class TrackedCaseCancelled(TrackerEvent):
    type: Literal["duban.tracker.case.cancelled.v1"]
    subject: CaseId
    data: TrackedCaseCancelledData


class CaseWarningData(Closed):
    department: DepartmentCode
    case_type: CaseType
    opened_at: Timestamp
    # Share of the allowed time used, in percent: 50 and 75 warn, 100 is the limit reached.
    threshold: Literal[50, 75, 100]
    indicator: IndicatorId  # the plan's indicator whose target is the case's limit
    unit: Literal["working_hours", "working_days", "calendar_days"]
    allowed: Value  # the limit, in `unit`
    elapsed: Value  # time used as of `as_of`, in `unit`, paused time excluded
    as_of: Timestamp
    paused: StrictBool  # the clock is paused right now (补正, 听证…)
    reference: Reference | None = None
    title: Title | None = None


class CaseWarning(TrackerEvent):
    type: Literal["duban.tracker.case.warning.v1"]
    subject: CaseId
    data: CaseWarningData


# Department events by what they are about: a task, a case's life, an indicator.
TASK_EVENTS: tuple[type[DepartmentEvent], ...] = (TaskProgressReported, TaskMilestoneCompleted)
CASE_EVENTS: tuple[type[DepartmentEvent], ...] = (
    CaseOpened, CaseStepCompleted, CasePaused, CaseResumed, CaseClosed, CaseCancelled)
DEPARTMENT_EVENTS: tuple[type[DepartmentEvent], ...] = (*TASK_EVENTS, *CASE_EVENTS, IndicatorValueReported)
TRACKER_EVENTS: tuple[type[TrackerEvent], ...] = (
    TaskUpdated,
    TaskLightChanged,
    MilestoneStatusChanged,
    MilestoneExtensionDecided,
    CompletionAwaitingVerification,
    CompletionVerified,
    CompletionReturned,
    TrackedCaseOpened,
    TrackedCaseClosed,
    TrackedCaseCancelled,
    CaseWarning,
)
