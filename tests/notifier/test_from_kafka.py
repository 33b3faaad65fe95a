"""The loop closed through the broker, with real processes: a department's case events reach the
tracker, whose case-warning job announces the case past its limit on the tracker's topic; the
notifier consumes it from Kafka and mails the department handling the case and posts the lead's
signed webhook, once."""

from __future__ import annotations

import base64

import pytest
from standardwebhooks.webhooks import Webhook

from tests.conftest import migrated_schema, schema_pool
from tests.notifier.conftest import write_routes
from tests.notifier.notices import notice_errors
from tests.processes import ServiceProcess
from tests.tracker.conftest import at, case_event
from tests.tracker.runtime import create_topics, produce, tracker_env, wait_for

pytestmark = pytest.mark.database

SECRET = "whsec_" + base64.b64encode(b"construction-bureau-webhook-key!").decode()
CASE_WARNING_NOTICE = "duban.notifier.case-warning-notice.v1"


@pytest.fixture
async def schemas(database_url):
    async with migrated_schema(database_url, "tracker") as tracker, migrated_schema(database_url, "notifier") as notifier:
        yield tracker, notifier


async def test_a_case_past_its_limit_reaches_the_handling_and_the_lead_department(
        unique_topics, kafka_bootstrap, database_url, schemas, tmp_path, smtp_server, http_receiver):
    settings = unique_topics.model_copy(update={"kafka_bootstrap": kafka_bootstrap})
    await create_topics(settings)
    tracker_schema, notifier_schema = schemas
    controller, mailbox = smtp_server
    routes = write_routes(tmp_path, {
        "power-supply-center": [{"channel": "email", "to": ["office@power.gulou.gov.cn"]}],
        "construction": [{"channel": "webhook", "url": f"{http_receiver.url}/construction", "secret": SECRET,
                          "name": "construction"}]})

    def process(module: str, schema: str, **extra: str) -> ServiceProcess:
        env = tracker_env(settings, database_url=database_url, schema=schema, group=f"{module}-{schema}",
                          data_dir=tmp_path) | extra
        return ServiceProcess(env, tmp_path / f"{schema}.log", module=module).start()

    tracker = process("services.tracker", tracker_schema, DUBAN_CASE_WARNING_INTERVAL_S="0.5")
    notifier = process("services.notifier", notifier_schema, DUBAN_NOTIFIER_ROUTES=str(routes),
                       DUBAN_SMTP_HOST=controller.hostname, DUBAN_SMTP_PORT=str(controller.port),
                       DUBAN_SCHEDULER_INTERVAL_S="0.5")
    try:
        # Low-voltage grid connection: 13 working days allowed. Opened 2021-08-10; the processes' clock
        # reads 2021-09-01 10:00, more than 13 working days later.
        await produce(settings, [case_event("opened", "GD-0042", at("2021-08-10 09:00"), {},
                                            department="power-supply-center",
                                            case_type="power_connection_low_voltage")])

        async def warned():
            return [r for r in http_receiver.received if r.body["type"] == CASE_WARNING_NOTICE]
        [hook] = await wait_for(warned, 90, "the lead's case-warning webhook", tracker, notifier)

        async def mailed():
            return [m for _, m in mailbox.messages if m["Subject"].startswith("【时限预警】")]
        mails = await wait_for(mailed, 30, "the handling department's mail", tracker, notifier)
    finally:
        assert notifier.stop() and tracker.stop()

    assert Webhook(SECRET).verify(hook.raw, hook.headers) == hook.body
    assert notice_errors(hook.body) == []
    data = hook.body["data"]
    assert hook.body["subject"] == "GD-0042" and data["threshold"] == 100
    assert (data["indicator"], data["unit"], data["allowed"]) == ("power_connection_days", "working_days", 13.0)
    assert data["elapsed"] >= 13 and data["addressees"] == ["鼓楼供电服务中心", "区建设局"]
    [mail] = mails
    assert mail["To"] == "office@power.gulou.gov.cn" and "已到办理时限" in mail["Subject"]
    assert "办理时限：13个工作日" in mail.get_content()
    async with schema_pool(database_url, notifier_schema) as pool:
        sent = await pool.fetch("SELECT recipient, level, status FROM deliveries WHERE kind = 'case-warning' ORDER BY recipient")
    assert [(r["recipient"], r["level"], r["status"]) for r in sent] == [
        ("email:office@power.gulou.gov.cn", 100, "sent"), ("webhook:construction", 100, "sent")]
