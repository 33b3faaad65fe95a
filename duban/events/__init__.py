"""Event contracts: pydantic models of the CloudEvents that department systems and the tracker
emit (each names its type once, `Model.TYPE`), validation against the JSON Schemas in
contracts/events/, routing to handlers by model class, and the Kafka binding."""

from duban.events.kafka import KafkaRecordError, from_kafka, to_kafka
from duban.events.models import (
    DepartmentEvent,
    Event,
    TrackerEvent,
    data_schema_id,
    event_type,
    schema_id,
)
from duban.events.registry import (
    CONTRACTS,
    DEPARTMENT_EVENT_TYPES,
    TRACKER_EVENT_TYPES,
    Dispatch,
    EventContract,
    FieldError,
    InvalidEvent,
    build_event,
    parse_event,
    validate_event,
    validate_or_raise,
)

__all__ = [
    "CONTRACTS",
    "DEPARTMENT_EVENT_TYPES",
    "TRACKER_EVENT_TYPES",
    "DepartmentEvent",
    "Dispatch",
    "Event",
    "EventContract",
    "FieldError",
    "InvalidEvent",
    "KafkaRecordError",
    "TrackerEvent",
    "build_event",
    "data_schema_id",
    "event_type",
    "from_kafka",
    "parse_event",
    "schema_id",
    "to_kafka",
    "validate_event",
    "validate_or_raise",
]
