"""Load: read the manifests (deploy.json, config.json, CI.json, k3s manifests) from git objects or the
checked-out tree within the input limits, validate them against their schemas, join them and
resolve every requested commit to a full SHA (M1-M9). The result is `DesiredState`.

It also holds the pure rules over what it reads, which both the checks and the providers apply: the
E2 exposure rule (`k8s_exposure`) and the G1 Code Queue source guard (`source_guard`, run by
`udeploy guard` and by the k3s guard-source step before a hostPath rollout).
"""
