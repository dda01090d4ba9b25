--! kind = "view"
--! description = "Log lines that report an HTTP response, with its status code"
SELECT ts, service, host, CAST(m[1] AS INT) AS status
FROM (
    SELECT ts, service, host, regexp_match(message, '\b([1-5][0-9][0-9])\b( after |\s+[0-9]+ms)') AS m
    FROM logs
)
WHERE m IS NOT NULL
