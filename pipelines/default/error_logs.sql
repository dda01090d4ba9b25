--! kind = "view"
--! description = "Log lines at ERROR or FATAL, with the service they came from"
SELECT ts, service, host, level, message
FROM logs
WHERE level IN ('ERROR', 'FATAL')
