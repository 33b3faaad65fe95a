"""Pins the plan's facts (鼓政办〔2021〕18号) as the catalog holds them, and the loader's checks."""

from __future__ import annotations

import re
import shutil
from datetime import date
from pathlib import Path

import pytest
from pydantic import ValidationError

from duban.catalog import Catalog, CatalogError, default_directory, load_catalog, parse_due_phrases
from duban.catalog.models import Indicator

PLAN_DIR = Path(__file__).resolve().parents[2] / "contracts" / "plan"
END_2021 = date(2021, 12, 31)


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog()


# -- areas and tasks ---------------------------------------------------------------------------


def test_the_plan_has_8_areas_and_28_tasks(catalog: Catalog) -> None:
    assert [a.id for a in catalog.areas] == [f"A{n}" for n in range(1, 9)]
    assert [t.id for t in catalog.tasks] == [f"T{n:02d}" for n in range(1, 29)]
    assert catalog.plan.number == "鼓政办〔2021〕18号"
    assert catalog.plan.issuer == "district-office"


def test_area_names_follow_the_body(catalog: Catalog) -> None:
    assert [a.name for a in catalog.areas] == [
        "持续提升投资服务水平",
        "降低市场准入和创业就业门槛",
        "简化企业办事审批手续",
        "优化提升纳税服务流程与方式",
        "减轻企业生产经营压力",
        "提升智慧政务服务效率",
        "加强市场主体权益保障",
        "优化社会基础服务水平",
    ]
    assert [a.numeral for a in catalog.areas] == list("一二三四五六七八")
    assert catalog.area("A8").aliases == ("优化社会服务水平",)


# The body list under 三、主要任务: tasks 1-3 in area 一, 4-6 in 二 ... 23-28 in 八.
AREA_OF_TASK = {
    **dict.fromkeys(["T01", "T02", "T03"], "A1"),
    **dict.fromkeys(["T04", "T05", "T06"], "A2"),
    **dict.fromkeys(["T07", "T08", "T09"], "A3"),
    **dict.fromkeys(["T10", "T11"], "A4"),
    **dict.fromkeys(["T12", "T13"], "A5"),
    **dict.fromkeys(["T14", "T15", "T16", "T17"], "A6"),
    **dict.fromkeys(["T18", "T19", "T20", "T21", "T22"], "A7"),
    **dict.fromkeys(["T23", "T24", "T25", "T26", "T27", "T28"], "A8"),
}


def test_every_task_is_in_its_body_list_area(catalog: Catalog) -> None:
    assert {t.id: t.area for t in catalog.tasks} == AREA_OF_TASK


@pytest.mark.parametrize(
    ("task_id", "title"),
    [
        ("T01", "推进投资项目审批便利化"),
        ("T05", "营造创新创业创造环境"),
        ("T10", "研发“八闽办税码”"),
        ("T17", "增加新业态应用场景供给"),
        ("T21", "推行“多元调解+速裁”，深入推进“一站式”建设"),
        ("T28", "引导企业建立完善工资分配制度"),
    ],
)
def test_task_titles(catalog: Catalog, task_id: str, title: str) -> None:
    task = catalog.task(task_id)
    assert task.title == title
    assert not task.measures.startswith(title)  # the title sentence is not repeated in measures


def test_measures_are_complete_and_corrected(catalog: Catalog) -> None:
    t02 = catalog.task("T02").measures
    assert t02.startswith("配合福州市推行分级分类管理")
    assert "明确办理流程和时限要求" in t02
    assert t02.endswith("逐步健全区直各部门的测绘成果共享互认。")
    assert catalog.task("T28").measures.startswith("配合完成福州市人社局分配的企业薪酬调查任务")


def test_task_kinds(catalog: Catalog) -> None:
    featured = {t.id for t in catalog.tasks if t.kind == "district_featured"}
    assert featured == {"T10", "T11"}
    assert catalog.task("T17").kind == catalog.task("T28").kind == "city_assigned"


@pytest.mark.parametrize(
    ("task_id", "lead", "responsible"),
    [
        ("T01", ["dev-reform", "admin-service-center"], ["relevant-departments"]),
        (
            "T02",
            ["construction", "digital-office", "admin-service-center"],
            ["natural-resources-planning", "dev-reform", "archives", "ecology-environment", "landscaping-center"],
        ),
        (
            "T07",
            ["market-regulation"],
            ["justice", "dev-reform", "tax-bureau", "admin-service-center", "public-security", "hr-social-security"],
        ),
        (
            "T13",
            ["finance-office"],
            [
                "dev-reform",
                "public-finance",
                "construction",
                "hr-social-security",
                "market-regulation",
                "tax-bureau",
                "power-supply-center",
            ],
        ),
        ("T17", ["digital-office"], ["industry-it", "health"]),
        ("T20", ["district-court"], ["relevant-departments"]),
        ("T22", ["justice", "market-regulation"], []),
        ("T27", ["dev-reform"], []),
        ("T28", ["hr-social-security"], []),
    ],
)
def test_lead_and_responsible(catalog: Catalog, task_id: str, lead: list[str], responsible: list[str]) -> None:
    task = catalog.task(task_id)
    assert list(task.lead) == lead
    assert list(task.responsible) == responsible


# -- milestones --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("task_id", "dues"),
    [
        ("T02", [date(2021, 3, 31), END_2021]),
        ("T04", [END_2021]),
        ("T07", [date(2021, 6, 30), END_2021]),
        ("T08", [date(2022, 12, 31)]),
        ("T25", [END_2021]),
    ],
)
def test_stated_milestone_dates(catalog: Catalog, task_id: str, dues: list[date]) -> None:
    milestones = catalog.task(task_id).milestones
    assert sorted({m.due for m in milestones}) == dues
    assert all(m.stated and m.recurrence is None for m in milestones)


def test_t02_milestones_in_detail(catalog: Catalog) -> None:
    m1, m2, m3 = catalog.task("T02").milestones
    assert (m1.id, m1.title, m1.due) == ("T02-M1", "公布审批事项保留清单", date(2021, 3, 31))
    assert (m2.id, m2.due) == ("T02-M2", END_2021)
    assert (m3.id, m3.due) == ("T02-M3", END_2021)
    assert catalog.milestone("T02-M3") == m3


@pytest.mark.parametrize("task_id", ["T05", "T22"])
def test_annual_duties_recur_yearly(catalog: Catalog, task_id: str) -> None:
    (milestone,) = catalog.task(task_id).milestones
    assert milestone.recurrence == "yearly"
    assert milestone.due == END_2021
    assert milestone.source_text.startswith("每年")
    assert milestone.occurrences(2023) == [END_2021, date(2022, 12, 31), date(2023, 12, 31)]
    assert milestone.occurrences(2020) == []


def test_one_off_milestone_occurs_once(catalog: Catalog) -> None:
    milestone = catalog.milestone("T08-M1")
    assert milestone.occurrences(2021) == []
    assert milestone.occurrences(2030) == [date(2022, 12, 31)]


def test_undated_tasks_get_the_plan_year_default(catalog: Catalog) -> None:
    undated = [t for t in catalog.tasks if not parse_due_phrases(t.measures) and "每年" not in t.measures]
    numbers = (1, 3, 6, 10, 11, 12, 13, 15, 16, 17, 18, 21, 23, 24, 26, 27, 28)
    assert {t.id for t in undated} == {f"T{n:02d}" for n in numbers}
    for task in undated:
        assert [(m.id, m.title, m.due, m.stated) for m in task.milestones] == [
            (f"{task.id}-M1", "完成年度任务", END_2021, False)
        ]


def test_stated_milestones_and_the_text_agree(catalog: Catalog) -> None:
    """Every date written in a task's measures has a stated milestone, and no stated milestone
    has a date the text does not write: the data cannot drift from the text."""
    for task in catalog.tasks:
        stated = {m.due for m in task.milestones if m.stated}
        assert stated == set(parse_due_phrases(task.measures)), task.id


@pytest.mark.parametrize(
    ("text", "dues"),
    [
        ("2021年3月底前公布保留清单", [date(2021, 3, 31)]),
        ("2021年6月底前,企业开办时间压缩至5个工作日内", [date(2021, 6, 30)]),
        ("2021年底前实现远程电子开标", [END_2021]),
        ("2021年底将简易破产案件", [END_2021]),
        ("2021 年底完成教场幼儿园", [END_2021]),
        ("2022年底前,“三零”低压", [date(2022, 12, 31)]),
        ("2021年2月底前A；2021年底前B", [date(2021, 2, 28), END_2021]),
        ("《市场准入负面清单（2020年版）》", []),
        ("每年抽查政策文件比例不低于新出台总量的 20%", []),
    ],
)
def test_parse_due_phrases(text: str, dues: list[date]) -> None:
    assert parse_due_phrases(text) == dues


# -- indicators --------------------------------------------------------------------------------

ADMIN = "admin-service-center"

# id: (task, unit, aggregate, comparison, target, target_max, deadline, feed kind, case type, departments)
INDICATORS = {
    "instant_item_ratio": ("T14", "ratio", "ratio", "ge", 0.5, None, END_2021, "case", "service_item", [ADMIN]),
    "company_startup_hours": (
        "T07", "working_hours", "mean", "le", 5, None, END_2021, "case", "company_startup", ["market-regulation", ADMIN]
    ),
    "company_startup_days": (
        "T07", "working_days", "mean", "le", 5, None, date(2021, 6, 30), "case", "company_startup",
        ["market-regulation", ADMIN],
    ),
    "annual_tax_hours": ("T09", "hours_per_year", "value", "le", 90, None, END_2021, "report", None, ["tax-bureau"]),
    "building_permit_steps": (
        "T02", "steps", "max", "le", 15, None, END_2021, "case", "building_permit", ["construction", ADMIN]
    ),
    "building_permit_days": (
        "T02", "working_days", "mean", "le", 50, None, END_2021, "case", "building_permit", ["construction", ADMIN]
    ),
    "power_connection_steps": (
        "T08", "steps", "max", "le", 3, None, END_2021, "case", "power_connection_low_voltage",
        ["power-supply-center"],
    ),
    "power_connection_days": (
        "T08", "working_days", "mean", "le", 13, None, date(2022, 12, 31), "case", "power_connection_low_voltage",
        ["power-supply-center"],
    ),
    "export_tax_refund_days": (
        "T09", "working_days", "mean", "le", 7, None, END_2021, "case", "export_tax_refund", ["tax-bureau"]
    ),
    "zero_trip_ratio": ("T14", "ratio", "ratio", "ge", 0.7, None, END_2021, "case", "service_item", [ADMIN]),
    "simple_bankruptcy_days": (
        "T20", "calendar_days", "mean", "le", 180, None, END_2021, "case", "simple_bankruptcy", ["district-court"]
    ),
    "policy_review_ratio": ("T22", "ratio", "value", "ge", 0.2, None, END_2021, "report", None, ["justice"]),
    "new_school_places": ("T25", "count", "value", "approx", 1200, None, END_2021, "report", None, ["education"]),
    "school_floor_area": ("T25", "area_m2", "value", "ge", 30300, None, END_2021, "report", None, ["education"]),
    "new_high_tech_enterprises": ("T27", "count", "value", "ge", 100, None, END_2021, "report", None, ["dev-reform"]),
}


def test_the_catalog_holds_exactly_these_indicators(catalog: Catalog) -> None:
    assert [i.id for i in catalog.indicators] == list(INDICATORS)


@pytest.mark.parametrize("indicator_id", list(INDICATORS))
def test_indicator_targets(catalog: Catalog, indicator_id: str) -> None:
    task, unit, aggregate, comparison, target, target_max, deadline, kind, case_type, departments = INDICATORS[
        indicator_id
    ]
    i = catalog.indicator(indicator_id)
    assert (i.task, i.unit, i.aggregate, i.comparison) == (task, unit, aggregate, comparison)
    assert (i.target, i.target_max, i.deadline) == (target, target_max, deadline)
    assert (i.feed.kind, i.feed.case_type, list(i.feed.departments)) == (kind, case_type, departments)
    assert i.source_text in catalog.task(task).measures or i.source_text in catalog.plan.goals


def test_indicator_flags(catalog: Catalog) -> None:
    assert {i.id for i in catalog.indicators if i.aspirational} == {"new_high_tech_enterprises"}
    # "用电报装环节压缩至2到3个": at most 3 is the commitment, 2 the aspiration shown beside it.
    assert {i.id: i.aspiration for i in catalog.indicators if i.aspiration is not None} == {
        "power_connection_steps": 2}
    assert {i.id for i in catalog.indicators if i.recurrence == "yearly"} == {"policy_review_ratio"}
    assert catalog.indicator("simple_bankruptcy_days").source_text == "2021年底将简易破产案件平均审理周期控制在180天内"


def test_an_aspiration_lies_beyond_the_target(catalog: Catalog) -> None:
    steps = catalog.indicator("power_connection_steps").model_dump()
    with pytest.raises(ValidationError, match="aspiration lies beyond the target"):
        Indicator.model_validate({**steps, "aspiration": 4})


def test_case_types_and_their_senders(catalog: Catalog) -> None:
    assert catalog.case_types == {
        "service_item",
        "company_startup",
        "building_permit",
        "power_connection_low_voltage",
        "export_tax_refund",
        "simple_bankruptcy",
    }
    senders = {ct: catalog.case_type_departments(ct) for ct in catalog.case_types}
    assert senders == {
        "service_item": {ADMIN},
        "company_startup": {"market-regulation", ADMIN},
        "building_permit": {"construction", ADMIN},
        "power_connection_low_voltage": {"power-supply-center"},
        "export_tax_refund": {"tax-bureau"},
        "simple_bankruptcy": {"district-court"},
    }
    assert [i.id for i in catalog.indicators_for_case_type("service_item")] == ["instant_item_ratio", "zero_trip_ratio"]


def test_feeds_per_department(catalog: Catalog) -> None:
    assert catalog.feeds(ADMIN) == {"service_item", "company_startup", "building_permit"}
    assert catalog.feeds("tax-bureau") == {"export_tax_refund", "annual_tax_hours"}
    assert catalog.feeds("justice") == {"policy_review_ratio"}
    assert catalog.feeds("archives") == frozenset()


# -- departments -------------------------------------------------------------------------------

NAMED_CODES = {
    "district-office": "区政府办公室",
    "district-court": "区法院",
    "tax-bureau": "区税务局",
    "market-regulation": "区市场监管局",
    "dev-reform": "区发改局",
    "admin-service-center": "区行政服务中心管委会",
    "power-supply-center": "鼓楼供电服务中心",
    "construction": "区建设局",
    "digital-office": "区数字办",
    "hr-social-security": "区人社局",
    "justice": "区司法局",
    "education": "区教育局",
    "finance-office": "区金融办",
}


def test_department_codes(catalog: Catalog) -> None:
    for code, name in NAMED_CODES.items():
        assert catalog.department(code).name == name
    for department in catalog.departments:
        assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", department.code), department.code
    assert len({d.code for d in catalog.departments}) == len(catalog.departments)


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("区发改局（科技局）", "dev-reform"),
        ("区发改局(科技局)", "dev-reform"),
        ("区发改局 (科技局)", "dev-reform"),
        ("区市场监管局（知识产权局）", "market-regulation"),
        ("区市场监管局 (知识产权局)", "market-regulation"),
        ("区行政服务中心 管委会", "admin-service-center"),
        ("福州市鼓楼区人民政府办公室", "district-office"),
        ("各街镇", "subdistricts-town"),
        ("洪山镇政府", "hongshan-town"),
        ("福州软件园", "fuzhou-software-park"),
        ("高新区洪山园", "hongshan-hi-tech-park"),
        ("各街道办事处", "subdistrict-offices"),
    ],
)
def test_department_names_and_aliases_resolve(catalog: Catalog, name: str, code: str) -> None:
    assert catalog.department_by_name(name).code == code


def test_every_task_department_is_known(catalog: Catalog) -> None:
    codes = {d.code for d in catalog.departments}
    for task in catalog.tasks:
        assert set(task.departments) <= codes, task.id


def test_every_department_is_named_by_the_plan_or_justified(catalog: Catalog) -> None:
    in_tasks = {c for t in catalog.tasks for c in t.departments}
    unreferenced = {
        d.code
        for d in catalog.departments
        if d.code not in in_tasks and not catalog.collectives_of(d.code) & in_tasks
    }
    assert unreferenced == {"district-office", "district-departments"}
    assert all(catalog.department(code).note for code in unreferenced)


def test_collectives(catalog: Catalog) -> None:
    assert catalog.department("subdistricts-town").members == ("subdistrict-offices", "hongshan-town")
    assert catalog.department("parks").members == ("fuzhou-software-park", "hongshan-hi-tech-park")
    assert catalog.department("relevant-departments").open_membership
    assert {d.code for d in catalog.departments if d.kind == "collective"} == {
        "subdistricts-town",
        "subdistrict-offices",
        "parks",
        "relevant-departments",
        "district-departments",
    }


def test_tasks_of_department(catalog: Catalog) -> None:
    assert [t.id for t in catalog.tasks_of_department("digital-office")] == ["T02", "T05", "T14", "T15", "T17", "T18"]
    assert [t.id for t in catalog.tasks_of_department("hongshan-town")] == ["T06", "T16"]
    assert [t.id for t in catalog.tasks_of_department("fuzhou-software-park")] == ["T16"]
    assert [t.id for t in catalog.tasks_of_department("district-court")] == ["T19", "T20", "T21"]


def test_who_may_report_a_task(catalog: Catalog) -> None:
    assert catalog.may_report_task("digital-office", "T17")
    assert catalog.may_report_task("health", "T17")
    assert not catalog.may_report_task("tax-bureau", "T17")
    assert catalog.may_report_task("hongshan-town", "T06")  # through 各街镇
    assert catalog.may_report_task("archives", "T20")  # 各相关部门 is open to every unit
    assert not catalog.may_report_task("parks", "T20")


def test_unknown_ids_raise(catalog: Catalog) -> None:
    for lookup, key in (
        (catalog.task, "T29"),
        (catalog.department, "district-zoo"),
        (catalog.department_by_name, "区动物园"),
        (catalog.indicator, "nothing"),
        (catalog.milestone, "T01-M9"),
        (catalog.indicators_for_case_type, "parking_fine"),
    ):
        with pytest.raises(KeyError):
            lookup(key)


# -- Chinese text ------------------------------------------------------------------------------

ALLOWED_LATIN = {"Ukey"}  # 税务 Ukey (T12) is the plan's own word; E福州 is a single letter


def _chinese_texts(catalog: Catalog):
    yield "plan.goals", catalog.plan.goals
    for area in catalog.areas:
        yield area.id, " ".join((area.name, *area.aliases))
    for department in catalog.departments:
        yield department.code, " ".join(department.names)
    for task in catalog.tasks:
        yield task.id, " ".join((task.title, task.measures))
        for m in task.milestones:
            yield m.id, " ".join((m.title, m.source_text or ""))
    for i in catalog.indicators:
        yield i.id, " ".join((i.name, i.source_text))
    for ct in catalog.case_type_defs:
        yield ct.id, ct.name


def test_no_stray_english_words_in_chinese_text(catalog: Catalog) -> None:
    stray = {
        (where, word)
        for where, text in _chinese_texts(catalog)
        for word in re.findall(r"[A-Za-z]{2,}", text)
        if word not in ALLOWED_LATIN
    }
    assert stray == set()
    assert "E福州" in catalog.task("T14").measures


# -- loading -----------------------------------------------------------------------------------


def test_default_catalog_is_loaded_once(catalog: Catalog) -> None:
    assert load_catalog() is catalog
    assert default_directory() == PLAN_DIR


def test_contracts_dir_can_be_overridden(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shutil.copytree(PLAN_DIR, tmp_path / "plan")
    _edit(tmp_path / "plan", "areas.yaml", "name: 持续提升投资服务水平", "name: 持续提升投资服务水平（副本）")
    monkeypatch.setenv("DUBAN_CONTRACTS_DIR", str(tmp_path))
    assert load_catalog().area("A1").name == "持续提升投资服务水平（副本）"


def _edit(directory: Path, file: str, old: str, new: str) -> None:
    path = directory / file
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} not in {file}"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


@pytest.fixture
def plan_copy(tmp_path: Path) -> Path:
    return Path(shutil.copytree(PLAN_DIR, tmp_path / "plan"))


def test_a_copy_loads_like_the_original(plan_copy: Path, catalog: Catalog) -> None:
    assert load_catalog(plan_copy) == catalog


@pytest.mark.parametrize(
    ("file", "old", "new", "problem"),
    [
        ("tasks.yaml", "lead: [区人社局]", "lead: [区人设局]", "T06: lead: unknown department 区人设局"),
        ("tasks.yaml", "- id: T28-M1", "- id: T27-M1", "milestone id T27-M1 is used more than once"),
        ("tasks.yaml", "due: 2021-03-31", "due: 2021-04-30", "T02-M1: stated due 2021-04-30 is not written"),
        ("tasks.yaml", "due: 2022-12-31", "due: 2022-02-30", "tasks.yaml: cannot read"),
        ("tasks.yaml", "  - id: T28\n", "  - id: T29\n", "found 28, missing ['T28'], unexpected ['T29']"),
        ("tasks.yaml", "area: A8", "area: A9", "T23: area: String should match pattern"),
        ("areas.yaml", "id: A8", "id: A7", "id A7 is used more than once"),
        ("departments.yaml", "members: [subdistrict-offices, hongshan-town]", "members: [subdistrict-offices, town]",
         "subdistricts-town: unknown member town"),
        ("departments.yaml", "name: 区档案局", "name: 区建设局", "name 区建设局 belongs to both construction and archives"),
        ("indicators.yaml", "task: T27", "task: T99", "new_high_tech_enterprises: unknown task T99"),
        ("indicators.yaml", "departments: [justice]", "departments: [ministry]",
         "policy_review_ratio: feed names unknown department ministry"),
        ("indicators.yaml", "case_type: simple_bankruptcy", "case_type: bankruptcy", "unknown case type bankruptcy"),
        ("indicators.yaml", "target: 0.7", "target: 70", "a ratio target is a fraction"),
        ("indicators.yaml", "deadline: 2021-06-30", "deadline: 2021-12-31",
         "company_startup_days: deadline 2021-12-31 should be 2021-06-30"),
        ("indicators.yaml", "deadline: 2021-12-31\n    aspirational", "deadline: 2022-12-31\n    aspirational",
         "new_high_tech_enterprises: deadline 2022-12-31 should be the plan-year end 2021-12-31"),
    ],
)
def test_a_corrupted_copy_is_refused(plan_copy: Path, file: str, old: str, new: str, problem: str) -> None:
    _edit(plan_copy, file, old, new)
    with pytest.raises(CatalogError) as raised:
        load_catalog(plan_copy)
    assert any(problem in p for p in raised.value.problems), raised.value.problems
    assert problem in str(raised.value)


def test_every_problem_is_reported_at_once(plan_copy: Path) -> None:
    _edit(plan_copy, "tasks.yaml", "lead: [区人社局]", "lead: [区人设局]")
    _edit(plan_copy, "indicators.yaml", "task: T27", "task: T99")
    _edit(plan_copy, "departments.yaml", "note: Issuer of the plan", "members_note: Issuer of the plan")
    with pytest.raises(CatalogError) as raised:
        load_catalog(plan_copy)
    problems = raised.value.problems
    assert any("T06: lead: unknown department 区人设局" in p for p in problems)
    assert any("new_high_tech_enterprises: unknown task T99" in p for p in problems)
    assert any("departments.yaml district-office: a unit has no members" in p for p in problems)


def test_a_missing_file_is_reported(plan_copy: Path) -> None:
    (plan_copy / "indicators.yaml").unlink()
    with pytest.raises(CatalogError, match="indicators.yaml: cannot read"):
        load_catalog(plan_copy)
