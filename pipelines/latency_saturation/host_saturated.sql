--! kind = "alert"
--! description = "A host above 90% CPU in two of the last three minutes"
--! severity = "warning"
--! title = "{host} ({service}) CPU at {cpu_pct}%"
--! keys = ["service", "host"]
--! lateness = "30s"
--! for_windows = 2
--! of_last = 3
SELECT tumble(m.ts, INTERVAL '1 minute') AS ts,
       m.service,
       m.host,
       round(100 * max(m.value)) AS cpu_pct,
       max(c.tier) AS tier
FROM metrics m
LEFT JOIN catalog c ON c.name = m.service
WHERE m.name LIKE '%cpu_usage'
GROUP BY 1, m.service, m.host
HAVING max(m.value) > 0.9
