--! kind = "signal"
--! description = "Share of each service's log lines at ERROR or FATAL, per minute"
--! lateness = "30s"
--! direction = "up"
SELECT tumble(ts, INTERVAL '1 minute') AS minute,
       service,
       CAST(count(*) FILTER (WHERE level IN ('ERROR', 'FATAL')) AS DOUBLE) / count(*) AS error_ratio
FROM logs
GROUP BY 1, service
