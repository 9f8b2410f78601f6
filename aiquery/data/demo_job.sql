-- The demo job: summaries, a genre classification with responseFormat, embeddings, and the AI Functions
-- ai_summarize and ai_classify, over the sample books.
-- `aiquery demo` runs it against the local gateway emulator; any workspace that serves these endpoints runs it too:
--   aiquery run aiquery/data/demo_job.sql --config aiquery/data/demo.toml \
--       --var books=aiquery/data/books.jsonl --var rows=430

CREATE DATABASE IF NOT EXISTS demo;

-- The first ${rows} texts, in 4 partitions so that Spark's workers share the calls.
CREATE OR REPLACE TEMP VIEW books AS
SELECT /*+ REPARTITION(4) */ id, title, author, year, kind, text
FROM json.`${books}`
WHERE id <= ${rows};

-- A chat endpoint: STRING results. modelParameters go to the model as they are.
CREATE OR REPLACE TABLE demo.summaries AS
SELECT id, title, author, kind,
       ai_query('demo-summarizer',
                'Summarize this passage in one sentence: ' || text,
                modelParameters => named_struct('max_tokens', 80, 'temperature', 0.2)) AS summary
FROM books;

-- responseFormat with a JSON schema: the answer is JSON text that follows it; from_json parses it.
-- failOnError => false: a row whose call fails keeps its errorMessage instead of failing the statement.
CREATE OR REPLACE TABLE demo.genres AS
SELECT id, title, parsed.genre AS genre, parsed.confidence AS confidence, response.errorMessage AS error
FROM (
  SELECT id, title, response, from_json(response.result, 'genre STRING, confidence DOUBLE') AS parsed
  FROM (
    SELECT id, title,
           ai_query('demo-classifier',
                    'Classify the genre of the book this passage is about: ' || text,
                    responseFormat => '{"type": "json_schema", "json_schema": {"name": "genre", "strict": true,
                      "schema": {"type": "object", "additionalProperties": false, "required": ["genre", "confidence"],
                        "properties": {
                          "genre": {"type": "string", "enum": ["adventure", "romance", "mystery", "horror",
                            "science fiction", "satire", "tragedy", "fantasy", "poetry", "non-fiction"]},
                          "confidence": {"type": "number", "minimum": 0, "maximum": 1}}}}}',
                    failOnError => false) AS response
    FROM books));

-- An embeddings endpoint: ARRAY<FLOAT> results.
CREATE OR REPLACE TABLE demo.embeddings AS
SELECT id, title, ai_query('databricks-gte-large-en', text) AS embedding
FROM books;

-- The AI Functions: Databricks' task functions, answered by the chat endpoint that [functions] names in demo.toml.
-- ai_classify answers one of its labels (or NULL when the model names none of them).
CREATE OR REPLACE TABLE demo.triage AS
SELECT id, title,
       ai_summarize(text, 15) AS gist,
       ai_classify(text, ARRAY('prose', 'verse', 'drama')) AS form
FROM books;
