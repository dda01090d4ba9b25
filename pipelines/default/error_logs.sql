--! kind = "view"
--! description = "Log lines at ERROR or FATAL, with the service they came from and their template"
SELECT ts, service, host, level, message, template_id, template
FROM logs
WHERE level IN ('ERROR', 'FATAL')
