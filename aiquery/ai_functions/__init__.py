"""The AI Functions (``ai_summarize``, ``ai_classify``, ``ai_agg`` ...): what they ask and how answers become values.

Pure Python, without Spark: :mod:`.definitions` and :mod:`.json_forms` build each function's
:class:`~.call.AIFunctionCall` from its literal arguments (checked by :mod:`.arguments`), :mod:`.answer_types`
maps loose answers to values, :mod:`.aggregate` reduces ``ai_agg``'s groups. :func:`aiquery.register` registers the
functions in Spark SQL beside ai_query; :mod:`aiquery.spark.ai_function_sql` holds their builders.
"""
