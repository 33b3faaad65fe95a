-- A case id is unique only within the department that reported it (two departments may both have
-- a case "2021-001"), so a case is (department, case_id), as in the tracker.
ALTER TABLE cases DROP CONSTRAINT cases_pkey;
ALTER TABLE cases ADD PRIMARY KEY (department, case_id);
