-- Latency, time to first byte, status codes and error rates.
-- Percentiles are exact (percentile); on very large tables percentile_approx is cheaper.

-- name: Latency and time to first byte per endpoint (ms)
-- chart: bar x=endpoint_name y=p50_latency_ms,p95_latency_ms,p50_ttfb_ms,p95_ttfb_ms
SELECT
  endpoint_name,
  count(*) AS requests,
  percentile(latency_ms, 0.5) AS p50_latency_ms,
  percentile(latency_ms, 0.95) AS p95_latency_ms,
  percentile(time_to_first_byte_ms, 0.5) AS p50_ttfb_ms,
  percentile(time_to_first_byte_ms, 0.95) AS p95_ttfb_ms
FROM ai_gateway.usage
WHERE NOT coalesce(cache_hit, false)
GROUP BY endpoint_name
ORDER BY endpoint_name;

-- name: Daily median latency per endpoint (ms)
-- chart: line x=event_date y=p50_latency_ms series=endpoint_name
SELECT
  event_date,
  endpoint_name,
  percentile(latency_ms, 0.5) AS p50_latency_ms
FROM ai_gateway.usage
WHERE NOT coalesce(cache_hit, false)
GROUP BY event_date, endpoint_name
ORDER BY event_date, endpoint_name;

-- name: Status codes
-- chart: bar x=status y=requests
SELECT
  coalesce(CAST(status_code AS STRING), 'no response') AS status,
  count(*) AS requests
FROM ai_gateway.usage
WHERE NOT coalesce(cache_hit, false)
GROUP BY status_code
ORDER BY requests DESC, status;

-- name: Error rate per endpoint (%)
-- chart: bar x=endpoint_name y=error_rate_pct
SELECT
  endpoint_name,
  count(*) AS requests,
  count_if(status_code IS NULL OR status_code >= 400) AS errors,
  round(100.0 * count_if(status_code IS NULL OR status_code >= 400) / count(*), 2) AS error_rate_pct
FROM ai_gateway.usage
WHERE NOT coalesce(cache_hit, false)
GROUP BY endpoint_name
ORDER BY error_rate_pct DESC, endpoint_name;
