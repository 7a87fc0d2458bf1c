"""Load: read the manifests (deploy.json, config.json, CI.json, k3s manifests) from git objects or the
checked-out tree within the input limits, validate them against their schemas, join them and
resolve every requested commit to a full SHA (M1-M9). The result is `DesiredState`.
"""
