"""Plan: observe what is live through the provider protocol, diff it against the desired state,
build the step DAG (each target's provider plans its own chain), run the guardrails, and hold the
result as a frozen `Plan`; its file format (`planfile`) and its human renderings (`render`, and
`pr_comment` for pull-request bots) live here too.
"""
