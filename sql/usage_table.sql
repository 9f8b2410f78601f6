-- The aiquery usage table: one row per HTTP request made by ai_query, shaped like Databricks'
-- system.ai_gateway.usage (same column names and types) plus aiquery's own columns after status_code.
-- An older table (schema_version aiquery-1) gains the columns after event_date on aiquery's next ingestion.
-- aiquery creates it on first ingestion; this file is for creating it by hand, e.g. in a shared metastore.
-- The schema is defined in aiquery/usage/schema.py; tests/usage/test_schema.py keeps this file equal to it.

CREATE DATABASE IF NOT EXISTS ai_gateway;

CREATE TABLE IF NOT EXISTS ai_gateway.usage (
  account_id STRING COMMENT 'Databricks account (NULL outside Databricks)',
  workspace_id STRING COMMENT 'Databricks workspace (NULL outside Databricks)',
  request_id STRING COMMENT 'unique per HTTP request (per attempt)',
  schema_version STRING COMMENT 'version of the table layout',
  endpoint_id STRING COMMENT 'gateway endpoint id (NULL when unknown)',
  endpoint_name STRING COMMENT 'endpoint name as written in ai_query',
  endpoint_tags MAP<STRING, STRING> COMMENT 'endpoint-level tags',
  event_time TIMESTAMP COMMENT 'when the request was sent',
  latency_ms BIGINT COMMENT 'end-to-end request time',
  time_to_first_byte_ms BIGINT COMMENT 'time until the response began',
  destination_type STRING COMMENT 'kind of model served (NULL when unknown)',
  destination_name STRING COMMENT 'served entity (NULL when unknown)',
  destination_model STRING COMMENT 'model name sent to the endpoint',
  requester STRING COMMENT 'user or service principal that ran the query',
  requester_type STRING COMMENT 'user, service principal, ... (NULL when unknown)',
  ip_address STRING COMMENT 'client address (not recorded: NULL)',
  url STRING COMMENT 'request URL',
  user_agent STRING COMMENT 'client User-Agent',
  api_type STRING COMMENT 'wire format, e.g. mlflow/v1/chat/completions',
  request_tags MAP<STRING, STRING> COMMENT 'Databricks-Ai-Gateway-Request-Tags',
  input_tokens BIGINT COMMENT 'prompt tokens, cached ones included',
  output_tokens BIGINT COMMENT 'completion tokens, reasoning included',
  total_tokens BIGINT COMMENT 'input + output tokens',
  token_details STRUCT<cache_read_input_tokens: BIGINT, cache_creation_input_tokens: BIGINT, output_reasoning_tokens: BIGINT> COMMENT 'cache and reasoning token counts',
  response_content_type STRING COMMENT 'Content-Type of the response',
  status_code INT COMMENT 'HTTP status (NULL when no response arrived)',
  call_id STRING COMMENT 'shared by the attempts of one call',
  attempt INT COMMENT '1 for the first request of a call, 2 for its first retry, ...',
  request_hash STRING COMMENT 'the request\'s fingerprint: equal for requests whose answer is the same',
  tokens_estimated BOOLEAN COMMENT 'token counts estimated as (chars+1)/4',
  error_message STRING COMMENT 'why the request failed (NULL on success)',
  spark_app_id STRING COMMENT 'Spark application that sent the request',
  task_attempt_id BIGINT COMMENT 'Spark task attempt that sent the request',
  query_tag STRING COMMENT 'tag of the query that sent the request',
  event_date DATE COMMENT 'UTC date of event_time',
  cache_hit BOOLEAN COMMENT 'answered from the answer store: no HTTP request was made (tokens: those it would have used)',
  cost DOUBLE COMMENT 'billed: tokens x price; 0 for an answer from the store; NULL without a price',
  avoided_cost DOUBLE COMMENT 'for an answer from the store: what the request would have cost',
  currency STRING COMMENT 'currency of cost and avoided_cost (USD, DBU, ...)',
  function_name STRING COMMENT 'the SQL function that made the request (ai_query, ai_summarize, ...)',
  estimate BOOLEAN COMMENT 'made by an estimate run on a sample of the rows',
  session_id STRING COMMENT 'Spark Connect session that sent the request (NULL outside Connect)',
  batch_id STRING COMMENT 'provider batch that answered the request (NULL when sent live)'
)
USING delta
COMMENT 'One row per HTTP request made by ai_query (aiquery), and per answer from its answer store, shaped like system.ai_gateway.usage'
TBLPROPERTIES (
  'delta.dataSkippingStatsColumns' = 'event_date,event_time,endpoint_name,requester,status_code'
);
