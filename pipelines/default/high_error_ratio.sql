--! kind = "alert"
--! description = "A host failing more than 20% of its requests; one alert per service"
--! severity = "critical"
--! title = "{service}: error ratio {error_ratio} on {host}"
--! keys = ["service"]
SELECT ts, service, host, round(value, 3) AS error_ratio
FROM metrics
WHERE name = 'error_ratio' AND value > 0.2 AND service IS NOT NULL
