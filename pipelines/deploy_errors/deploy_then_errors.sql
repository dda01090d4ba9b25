--! kind = "alert"
--! description = "A change on a service, then at least 10 error lines from it within ten minutes"
--! severity = "critical"
--! title = "{service}: {errors} errors after {change}"
--! keys = ["service", "change"]
--! lateness = "1m"
SELECT hop(ts, INTERVAL '10 minutes', INTERVAL '2 minutes') AS window_start,
       service,
       max(title) FILTER (WHERE is_change) AS change,
       min(ts) FILTER (WHERE is_change) AS changed_at,
       count(*) FILTER (WHERE NOT is_change) AS errors
FROM (
    SELECT ts, service, title, true AS is_change FROM changes
    UNION ALL
    SELECT ts, service, CAST(NULL AS VARCHAR), false FROM logs WHERE level IN ('ERROR', 'FATAL')
)
GROUP BY 1, service
HAVING count(*) FILTER (WHERE is_change) > 0
   AND count(*) FILTER (WHERE NOT is_change) >= 10
   AND max(ts) FILTER (WHERE NOT is_change) > min(ts) FILTER (WHERE is_change)
