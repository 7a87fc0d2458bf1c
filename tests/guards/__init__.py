"""Tests of the pre-rollout guards (G1: `udeploy guard code-queue-source`)."""
