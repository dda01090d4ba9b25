--! kind = "alert"
--! description = "A FATAL log line is an alert on its service and host"
--! severity = "critical"
--! title = "FATAL log on {service}: {message}"
--! keys = ["service", "host"]
SELECT ts, service, host, message
FROM error_logs
WHERE level = 'FATAL'
