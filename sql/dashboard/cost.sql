-- What the requests cost: tokens x the endpoint's price (cost is NULL for an endpoint without one). Costs in
-- different currencies (USD, DBU, ...) are never added up: every panel keeps them apart. An answer from the store
-- billed nothing (cost 0); avoided_cost is what its request would have cost.

-- name: Cost per currency
-- chart: table
SELECT
  currency,
  round(sum(cost), 4) AS cost,
  round(sum(avoided_cost), 4) AS avoided_cost,
  count_if(NOT coalesce(cache_hit, false)) AS requests,
  count_if(cache_hit) AS answers_from_store
FROM ai_gateway.usage
WHERE currency IS NOT NULL
GROUP BY currency
ORDER BY currency;

-- name: Daily cost
-- chart: line x=event_date y=cost series=currency
SELECT
  event_date,
  currency,
  round(sum(cost), 4) AS cost,
  round(sum(avoided_cost), 4) AS avoided_cost
FROM ai_gateway.usage
WHERE currency IS NOT NULL
GROUP BY event_date, currency
ORDER BY event_date, currency;

-- name: Cost per endpoint
-- chart: bar x=endpoint_name y=cost,avoided_cost
SELECT
  endpoint_name,
  currency,
  round(sum(cost), 4) AS cost,
  round(sum(avoided_cost), 4) AS avoided_cost
FROM ai_gateway.usage
WHERE currency IS NOT NULL
GROUP BY endpoint_name, currency
ORDER BY cost DESC, endpoint_name, currency;

-- name: Cost per requester
-- chart: table
SELECT
  requester,
  currency,
  round(sum(cost), 4) AS cost,
  round(sum(avoided_cost), 4) AS avoided_cost
FROM ai_gateway.usage
WHERE currency IS NOT NULL
GROUP BY requester, currency
ORDER BY cost DESC, requester, currency;

-- name: Cost per request tag
-- chart: table
SELECT
  concat(tag.key, '=', tag.value) AS request_tag,
  currency,
  round(sum(cost), 4) AS cost,
  round(sum(avoided_cost), 4) AS avoided_cost
FROM (SELECT explode(request_tags) AS (key, value), cost, avoided_cost, currency FROM ai_gateway.usage) AS tag
WHERE currency IS NOT NULL
GROUP BY request_tag, currency
ORDER BY cost DESC, request_tag, currency;

-- name: Cost per query tag
-- chart: table
SELECT
  coalesce(query_tag, '(none)') AS query_tag,
  currency,
  round(sum(cost), 4) AS cost,
  round(sum(avoided_cost), 4) AS avoided_cost,
  count_if(NOT coalesce(cache_hit, false)) AS requests
FROM ai_gateway.usage
WHERE currency IS NOT NULL
GROUP BY query_tag, currency
ORDER BY cost DESC, query_tag, currency
LIMIT 50;

-- name: Endpoints without a price
-- chart: table
SELECT
  endpoint_name,
  destination_model,
  count_if(NOT coalesce(cache_hit, false)) AS requests,
  coalesce(sum(CASE WHEN NOT coalesce(cache_hit, false) THEN total_tokens END), 0) AS tokens
FROM ai_gateway.usage
GROUP BY endpoint_name, destination_model
HAVING max(currency) IS NULL
ORDER BY requests DESC, endpoint_name;
