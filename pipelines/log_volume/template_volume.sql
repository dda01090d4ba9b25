--! kind = "signal"
--! description = "Lines per (service, template) every five minutes"
--! lateness = "1m"
--! direction = "both"
--! role = "evidence"
SELECT tumble(ts, INTERVAL '5 minutes') AS window_start,
       service,
       template_id,
       count(*) AS lines
FROM logs
GROUP BY 1, service, template_id
