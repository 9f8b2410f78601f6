"""The task AI Functions (``ai_summarize``, ``ai_classify``, ...): their prompts and how answers become values.

Work in progress (issue 14, part 1): pure Python, not registered in Spark yet. See :mod:`.answers`.
"""
