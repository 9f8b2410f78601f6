-- Failures: the most frequent error messages, retries per call, and calls that failed for good.
-- One row is one HTTP request; the attempts of one row's call share call_id.

-- name: Top error messages
-- chart: table
SELECT
  error_message,
  count(*) AS requests,
  count(DISTINCT call_id) AS calls,
  count(DISTINCT endpoint_name) AS endpoints
FROM ai_gateway.usage
WHERE NOT coalesce(cache_hit, false) AND error_message IS NOT NULL
GROUP BY error_message
ORDER BY requests DESC, error_message
LIMIT 20;

-- name: Retries per call
-- chart: bar x=retries y=calls
SELECT
  retries,
  count(*) AS calls
FROM (
  SELECT call_id, count(*) - 1 AS retries
  FROM ai_gateway.usage
  WHERE NOT coalesce(cache_hit, false)
  GROUP BY call_id
) AS per_call
GROUP BY retries
ORDER BY retries;

-- name: Calls whose last attempt failed, per endpoint
-- chart: bar x=endpoint_name y=failed_calls
SELECT
  endpoint_name,
  count(*) AS calls,
  count_if(final_status IS NULL OR final_status >= 400) AS failed_calls
FROM (
  SELECT call_id, endpoint_name, max_by(status_code, attempt) AS final_status
  FROM ai_gateway.usage
  WHERE NOT coalesce(cache_hit, false)
  GROUP BY call_id, endpoint_name
) AS per_call
GROUP BY endpoint_name
ORDER BY failed_calls DESC, endpoint_name;
