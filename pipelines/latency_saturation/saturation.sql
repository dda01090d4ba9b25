--! kind = "signal"
--! description = "The busiest host's CPU and memory use, per service and minute"
--! lateness = "30s"
--! direction = "up"
--! role = "cause"
SELECT tumble(ts, INTERVAL '1 minute') AS minute,
       service,
       max(value) FILTER (WHERE name LIKE '%cpu_usage') AS cpu,
       max(value) FILTER (WHERE name LIKE '%mem_usage') AS memory
FROM metrics
-- Telegraf's host_stats_cpu_usage and the agents' cpu_usage alike
WHERE (name LIKE '%cpu_usage' OR name LIKE '%mem_usage') AND service IS NOT NULL
GROUP BY 1, service
