-- The answer store: calls answered from it instead of an HTTP request, and the tokens they did not use again.
-- A row with cache_hit = true is such an answer; every other panel counts HTTP requests only.

-- name: Answers from the store
-- chart: kpi
SELECT
  count_if(cache_hit) AS answers_from_store,
  count_if(NOT coalesce(cache_hit, false)) AS http_requests,
  round(100 * count_if(cache_hit) / greatest(count(*), 1), 1) AS from_store_pct,
  coalesce(sum(CASE WHEN cache_hit THEN total_tokens END), 0) AS tokens_avoided
FROM ai_gateway.usage;

-- name: Answers from the store per endpoint
-- chart: bar x=endpoint_name y=answers_from_store,http_requests
SELECT
  endpoint_name,
  count_if(cache_hit) AS answers_from_store,
  count_if(NOT coalesce(cache_hit, false)) AS http_requests,
  coalesce(sum(CASE WHEN cache_hit THEN total_tokens END), 0) AS tokens_avoided
FROM ai_gateway.usage
GROUP BY endpoint_name
ORDER BY answers_from_store DESC, endpoint_name;

-- name: Daily answers from the store
-- chart: line x=event_date y=answers_from_store,tokens_avoided
SELECT
  event_date,
  count_if(cache_hit) AS answers_from_store,
  coalesce(sum(CASE WHEN cache_hit THEN total_tokens END), 0) AS tokens_avoided
FROM ai_gateway.usage
GROUP BY event_date
ORDER BY event_date;
