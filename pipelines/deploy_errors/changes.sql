--! kind = "view"
--! description = "Deploys and configuration changes, with what they changed"
SELECT ts, service, kind, title, labels['version'] AS version
FROM events
WHERE kind IN ('deploy', 'change') AND service IS NOT NULL
