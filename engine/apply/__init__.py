"""Apply: re-check that a saved plan can still be trusted (digest, lock, manifest ref, observed
fingerprints, guardrails), walk its DAG through the providers, and keep the job records, the
environment lock and the resume records under the state directory.
"""
