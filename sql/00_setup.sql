--
-- Setup shared by the pg_regress files: the extension, and regress.try(),
-- which runs one call and prints "SQLSTATE: message (hint: ...)" so each
-- invalid input is one line of the expected output (UUIDs masked).
--
-- (the runner has run CREATE EXTENSION authx)
SELECT extversion FROM pg_extension WHERE extname = 'authx';
CREATE SCHEMA regress;
CREATE FUNCTION regress.try(call text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    st   text;
    msg  text;
    hint text;
BEGIN
    EXECUTE 'SELECT ' || call;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, hint = PG_EXCEPTION_HINT;
    RETURN regexp_replace(st || ': ' || msg || coalesce(' (hint: ' || nullif(hint, '') || ')', ''),
                          '[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}', '<uuid>', 'g');
END
$$;
