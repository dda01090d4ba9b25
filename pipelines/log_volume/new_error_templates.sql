--! kind = "alert"
--! description = "An error template logged at least 10 times in five minutes by a service"
--! severity = "warning"
--! title = "{service}: {lines} × {template}"
--! keys = ["service", "template_id"]
--! lateness = "1m"
SELECT tumble(ts, INTERVAL '5 minutes') AS ts,
       service,
       template_id,
       max(template) AS template,
       count(*) AS lines
FROM logs
WHERE level IN ('ERROR', 'FATAL')
GROUP BY 1, service, template_id
HAVING count(*) >= 10
