"""The tracker's row locks (FOR NO KEY UPDATE) exclude other writers of a task or case but let another
transaction's foreign-key check through: a batch is not held up by a case warning being recorded or by
another transaction's uncommitted report of the same task."""

from __future__ import annotations

import pytest

from services.tracker import store
from tests.tracker.conftest import at, case_event

pytestmark = pytest.mark.database

# Far longer than either lock takes when it does not wait; a lock that waits on the other transaction
# fails with LockNotAvailableError instead of hanging the test.
LOCK_TIMEOUT = "SET LOCAL lock_timeout = '5s'"


async def test_locking_a_case_does_not_wait_for_a_warning_being_recorded_about_it(tracker, pool):
    case = ("tax-bureau", "LOCK-CASE-1")
    await tracker.send(case_event("opened", case[1], at("2021-08-02 09:00"), {}))
    async with pool.acquire() as job, pool.acquire() as batch, job.transaction():
        # The case-warning job's insert key-shares the case (case_warnings references cases).
        assert await store.record_warnings(job, *case, [50], "export_tax_refund_days", at("2021-08-04 09:00")) == [50]
        async with batch.transaction():
            await batch.execute(LOCK_TIMEOUT)
            assert list(await store.lock_cases(batch, [case])) == [case]


async def test_locking_a_task_does_not_wait_for_another_transactions_report_of_it(pool):
    report = ("/departments/development-reform", "lock-report-1", "T01", at("2021-08-02 09:00"), "in_progress", 40,
              None, None)
    async with pool.acquire() as other, pool.acquire() as batch, other.transaction():
        # A report's insert key-shares its task (task_reports references tasks).
        await store.insert_reports(other, [report])
        async with batch.transaction():
            await batch.execute(LOCK_TIMEOUT)
            assert list(await store.lock_tasks(batch, ["T01"])) == ["T01"]
