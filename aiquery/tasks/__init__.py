"""The task AI Functions (``ai_summarize``, ``ai_classify``, ...): their prompts and how answers become values.

Pure Python, without Spark: :mod:`.definitions` says what each function asks and reads back, :mod:`.answers`
maps loose answers to values, :mod:`.aggregate` reduces ``ai_agg``'s groups. :func:`aiquery.register` registers
the functions in Spark SQL beside ai_query (:mod:`aiquery.spark.tasks` holds their builders).
"""
