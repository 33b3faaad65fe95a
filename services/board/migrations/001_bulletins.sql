-- The weekly 督查通报 the board issued: the Word document as sent, its HTML, and who asked for it.
-- A week issued again is a new row; the board lists the latest of each week first.
CREATE TABLE bulletins (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    week         text        NOT NULL CHECK (week ~ '^[0-9]{4}-W[0-9]{2}$'),
    as_of        timestamptz NOT NULL,
    issued_at    timestamptz NOT NULL,
    issued_by    text        NOT NULL,
    title        text        NOT NULL,
    html         text        NOT NULL,
    docx         bytea       NOT NULL
);
CREATE INDEX bulletins_by_week ON bulletins (week, id DESC);
