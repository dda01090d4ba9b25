--! kind = "alert"
--! description = "A FATAL log line is an alert on its service and host; one per template"
--! severity = "critical"
--! title = "FATAL log on {service}: {template}"
--! keys = ["service", "host", "template_id"]
SELECT ts, service, host, message, template_id, template
FROM error_logs
WHERE level = 'FATAL'
