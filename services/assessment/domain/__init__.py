"""Pure domain of the assessment service (亩均效益评价, admission of new projects).

No I/O, no clock reads, no frameworks: every function takes what it needs and returns values.
Modules: credit_code, enterprise, policy, scoring, classification, disposition, evaluation, clusters,
admission, rows; exact (the one rounding rule) and canonical (canonical JSON and content hashes).
"""
