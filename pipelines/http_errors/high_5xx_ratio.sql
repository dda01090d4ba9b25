--! kind = "alert"
--! description = "More than 5% of a service's responses are 5xx, two minutes running"
--! severity = "critical"
--! title = "{service}: {pct_5xx}% of responses are 5xx"
--! keys = ["service"]
--! lateness = "30s"
--! for_windows = 2
SELECT tumble(ts, INTERVAL '1 minute') AS ts,
       service,
       round(100.0 * count(*) FILTER (WHERE status >= 500) / count(*), 1) AS pct_5xx,
       count(*) AS responses
FROM http_5xx
GROUP BY 1, service
HAVING count(*) FILTER (WHERE status >= 500) > 0.05 * count(*)
