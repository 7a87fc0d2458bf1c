"""Checks: the static rules over k3s manifests (D1-D4, E2), the G1 Code Queue source guard, and the
runtime checks `udeploy check` adds (E3, E5).
"""
