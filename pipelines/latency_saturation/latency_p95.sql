--! kind = "signal"
--! description = "p95 of the hosts' reported p95 latency, per service, over 5 minutes every minute"
--! lateness = "30s"
--! direction = "up"
SELECT hop(ts, INTERVAL '5 minutes', INTERVAL '1 minute') AS window_start,
       service,
       approx_percentile_cont(0.95) WITHIN GROUP (ORDER BY value) AS latency_p95_ms
FROM metrics
WHERE name = 'latency_p95_ms' AND service IS NOT NULL
GROUP BY 1, service
