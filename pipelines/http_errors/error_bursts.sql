--! kind = "alert"
--! description = "A burst of errors on one host: errors less than two minutes apart, 20 or more in all"
--! severity = "warning"
--! title = "{host}: burst of {errors} errors since {started}"
--! keys = ["service", "host"]
--! lateness = "30s"
SELECT session(ts, INTERVAL '2 minutes') AS started,
       service,
       host,
       count(*) AS errors,
       max(ts) AS ts
FROM logs
WHERE level IN ('ERROR', 'FATAL')
GROUP BY 1, service, host
HAVING count(*) >= 20
